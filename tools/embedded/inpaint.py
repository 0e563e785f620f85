"""Exemplar-based inpainting: a hole filled with patches copied from the rest of the image, coarse to fine.

Diffusion (OpenCV's Telea or Navier-Stokes inpainting) smears the hole's rim inwards: fine for a scratch, a blur
for anything large. Copying patches keeps the surroundings' texture instead (Criminisi, Pérez and Toyama, "Region
filling and object removal by exemplar-based image inpainting", 2004). A large hole is filled at a size where it
spans at most `COARSE_SIDE` pixels, which is cheap and lets a patch hold the texture's structure. The copies are
then made to agree where they meet (PatchMatch search and patch voting, as in Wexler et al.'s space-time
completion), and each finer level copies, pixel for pixel, from where its coarser level took them (the
nearest-neighbour field upsampled), so the fill has the photo's own grain rather than an upsampled blur.

Filling from the rim inwards carries whatever lies along the rim across the hole: a shadow left just outside
becomes a dark blob. So each coarse patch is also chosen for its mean colour agreeing with the surroundings' smooth
continuation into the hole, interpolated from a little way out (the membrane interpolation of Pérez et al.'s
Poisson editing, on a shrunk copy): the fill's broad colours come from the surroundings at large, its detail from
the patches.
"""

from __future__ import annotations

import cv2
import numpy as np

COARSE_SIDE = 64
"""The hole is first filled on a copy where its bounding box's longer side is at most this many pixels."""
PATCH = 9  # side of the patches copied at the coarse level, odd
SEARCH = 1.0  # the coarse search looks this many hole sizes (at least) around the hole for source patches
VOTE_PATCH = 7  # side of the patches whose overlaps are averaged (Wexler et al.), odd
COARSE_ROUNDS, FINE_ROUNDS = 3, 1  # rounds of search and averaging at the coarsest level and at each finer one
CANDIDATES = 4  # random candidates per pixel and round, besides the current source and the neighbours'
GUIDE = 1.0
"""How much a coarse patch's mean colour over the pixels it fills must agree with the surroundings' smooth
interpolation there, against how well it matches the known pixels around it (per pixel, both squared differences)."""
GUIDE_SIDE = 24  # that interpolation is made where the hole spans this many pixels: only its broad colours matter
GUIDE_GAP = 0.2  # ...from the surroundings beyond a strip this share of the hole's depth wide along its rim


def inpaint(image: np.ndarray, hole: np.ndarray) -> np.ndarray:
    """`image` (RGB uint8) with the pixels where `hole` (bool) is set replaced by patches from the rest of it."""
    hole = hole.astype(bool)
    if not hole.any():
        return image.copy()
    if hole.all():
        return image.copy()  # nothing to copy from
    ys, xs = np.nonzero(hole)
    extent = max(np.ptp(xs), np.ptp(ys)) + 1
    # Only the hole's neighbourhood takes part (the coarse fill copies from within SEARCH hole sizes of it anyway):
    # a small hole in a large photo costs what its surroundings do, not what the photo does.
    margin = round(SEARCH * extent) + 4 * PATCH
    y1, x1 = max(0, ys.min() - margin), max(0, xs.min() - margin)
    y2, x2 = min(hole.shape[0], ys.max() + 1 + margin), min(hole.shape[1], xs.max() + 1 + margin)
    if (y1, x1, y2, x2) != (0, 0, *hole.shape):
        out = image.copy()
        out[y1:y2, x1:x2] = inpaint(image[y1:y2, x1:x2], hole[y1:y2, x1:x2])
        return out
    levels = max(0, int(np.ceil(np.log2(extent / COARSE_SIDE))))
    # The image pyramid (level 0 = full size), halved until the hole fits COARSE_SIDE.
    images, holes = [image], [hole]
    for _ in range(levels):
        small = cv2.pyrDown(images[-1])
        sh, sw = small.shape[:2]
        # A coarse pixel is in the hole if any of its fine pixels is: nothing of the object survives the shrink.
        holes.append(cv2.resize(holes[-1].astype(np.uint8), (sw, sh), interpolation=cv2.INTER_AREA) > 0)
        images.append(small)
    rng = np.random.default_rng(0)  # the random search: the same pixels give the same fill
    filled, source = _exemplar_fill(images[-1], holes[-1])
    filled, source = _vote(images[-1], holes[-1], filled, source, COARSE_ROUNDS, rng)
    for level in range(levels - 1, -1, -1):
        filled, source = _follow(images[level], holes[level], filled, source)
        if level > 0:  # at full size the copies already agree: averaging there would only cost time and grain
            filled, source = _vote(images[level], holes[level], filled, source, FINE_ROUNDS, rng)
    out = image.copy()
    out[hole] = filled[hole]
    return out


def _follow(image: np.ndarray, hole: np.ndarray, coarse: np.ndarray,
            coarse_source: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One level finer without searching: each hole pixel copies the pixel its coarse pixel's source covers here
    (PatchMatch's upsampling of the nearest-neighbour field); copied regions stay whole, with this level's grain."""
    h, w = hole.shape
    ys, xs = np.nonzero(hole)
    ch, cw = coarse_source.shape[:2]
    parent = coarse_source[np.minimum(ys // 2, ch - 1), np.minimum(xs // 2, cw - 1)]
    sy = np.clip(parent[:, 0] * 2 + ys % 2, 0, h - 1)
    sx = np.clip(parent[:, 1] * 2 + xs % 2, 0, w - 1)
    # A source that falls in the hole (at a copied region's edge) takes the upsampled coarse fill instead.
    up = cv2.resize(coarse, (w, h), interpolation=cv2.INTER_LINEAR)
    out = image.copy()
    ok = ~hole[sy, sx]
    out[ys[ok], xs[ok]] = image[sy[ok], sx[ok]]
    out[ys[~ok], xs[~ok]] = up[ys[~ok], xs[~ok]]
    source = np.stack(np.mgrid[0:h, 0:w], axis=-1).astype(np.int32)
    source[ys, xs] = np.stack([sy, sx], axis=-1)
    return out, source


def _exemplar_fill(image: np.ndarray, hole: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Fill `hole` patch by patch from its rim inwards, most confident and most structured rim pixel first; the
    image and, per pixel, the (y, x) it was copied from (its own position where it was not in the hole)."""
    h, w = hole.shape
    r = PATCH // 2
    ys, xs = np.nonzero(hole)
    reach = max(round(SEARCH * (max(np.ptp(xs), np.ptp(ys)) + 1)), 4 * PATCH)
    # Work on the hole's neighbourhood only, padded by a patch's radius so that every patch lies inside the arrays.
    y1, x1 = max(0, ys.min() - reach), max(0, xs.min() - reach)
    y2, x2 = min(h, ys.max() + 1 + reach), min(w, xs.max() + 1 + reach)
    img = cv2.copyMakeBorder(image[y1:y2, x1:x2], r, r, r, r, cv2.BORDER_REFLECT).astype(np.float32)
    todo = np.pad(hole[y1:y2, x1:x2], r)
    # What the hole's colours would be if it only continued the surroundings smoothly: the patches are chosen to
    # agree with it too, so that a strip along the rim (a shadow, another object's edge), which the patches next to
    # it match best, is not carried across the hole.
    guide = cv2.copyMakeBorder(_smooth_fill(image[y1:y2, x1:x2], hole[y1:y2, x1:x2]), r, r, r, r,
                               cv2.BORDER_REFLECT)
    inside = np.pad(np.ones((y2 - y1, x2 - x1), bool), r)  # the padding is neither source nor to fill
    known = inside & ~todo
    # A source patch lies wholly on known pixels of the image.
    source_ok = cv2.erode(known.astype(np.uint8), np.ones((PATCH, PATCH), np.uint8), borderValue=0) > 0
    confidence = known.astype(np.float32)
    gy, gx = np.mgrid[0 : img.shape[0], 0 : img.shape[1]]
    src = np.stack([gy, gx], axis=-1).astype(np.int32)
    grey = cv2.cvtColor(img.astype(np.uint8), cv2.COLOR_RGB2GRAY).astype(np.float32)
    while todo.any():
        front = todo & (cv2.dilate(known.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0)
        if not front.any():  # a hole with no known pixel next to it: cannot happen, known is not empty
            break
        fy, fx = np.nonzero(front)
        priority = _confidence(confidence, fy, fx) * (_structure(grey, known, fy, fx) + 0.01)
        i = int(np.argmax(priority))
        cy, cx = int(fy[i]), int(fx[i])
        top, left = cy - r, cx - r
        target = img[top : top + PATCH, left : left + PATCH]
        weight = known[top : top + PATCH, left : left + PATCH]
        qy, qx = _best_source(img, source_ok, target, weight, cy, cx, reach,
                              guide[top : top + PATCH, left : left + PATCH])
        patch = np.s_[top : top + PATCH, left : left + PATCH]
        fill = todo[patch]
        copied = np.s_[qy - r : qy + r + 1, qx - r : qx + r + 1]
        img[patch][fill] = img[copied][fill]
        grey[patch][fill] = grey[copied][fill]  # the data term reads what is there now
        src[patch][fill] = src[copied][fill]
        confidence[patch][fill] = float(confidence[patch].sum()) / PATCH**2
        known[patch] |= fill
        todo[patch] &= ~fill
    out = image.copy()
    out[y1:y2, x1:x2] = np.clip(np.rint(img[r:-r, r:-r]), 0, 255).astype(np.uint8)
    source = np.stack(np.mgrid[0:h, 0:w], axis=-1).astype(np.int32)
    source[y1:y2, x1:x2] = src[r:-r, r:-r] - r + np.int32([y1, x1])
    return out, source


def _confidence(confidence: np.ndarray, ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
    """Criminisi's confidence term: the mean confidence over each candidate's patch."""
    r = PATCH // 2
    summed = cv2.integral(confidence)
    return (summed[ys + r + 1, xs + r + 1] - summed[ys - r, xs + r + 1] - summed[ys + r + 1, xs - r]
            + summed[ys - r, xs - r]) / PATCH**2


def _structure(grey: np.ndarray, known: np.ndarray, ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
    """Criminisi's data term: how strongly an edge of the known image runs into the hole at each rim pixel, so
    that lines and stripes are continued before flat areas are filled."""
    # Only around the rim: the filters need a few pixels of context.
    h, w = known.shape
    y1, x1 = max(0, int(ys.min()) - 4), max(0, int(xs.min()) - 4)
    y2, x2 = min(h, int(ys.max()) + 5), min(w, int(xs.max()) + 5)
    k = known[y1:y2, x1:x2].astype(np.float32)
    g = grey[y1:y2, x1:x2] * k
    # The image's gradient from known pixels only (normalised convolution), its isophote at right angles.
    smooth = cv2.GaussianBlur(g, (0, 0), 1.0) / np.maximum(cv2.GaussianBlur(k, (0, 0), 1.0), 1e-3)
    ly, lx = ys - y1, xs - x1
    ix = cv2.Sobel(smooth, cv2.CV_32F, 1, 0, ksize=3)[ly, lx]
    iy = cv2.Sobel(smooth, cv2.CV_32F, 0, 1, ksize=3)[ly, lx]
    nx = cv2.Sobel(k, cv2.CV_32F, 1, 0, ksize=3)[ly, lx]
    ny = cv2.Sobel(k, cv2.CV_32F, 0, 1, ksize=3)[ly, lx]
    norm = np.maximum(np.hypot(nx, ny), 1e-6)
    return np.abs(-iy * nx + ix * ny) / norm / 255.0


def _best_source(img: np.ndarray, source_ok: np.ndarray, target: np.ndarray, weight: np.ndarray,
                 cy: int, cx: int, reach: int, guide: np.ndarray) -> tuple[int, int]:
    """The centre of the known patch within `reach` of (cy, cx) most like `target` on its `weight` pixels, and
    whose mean over the others is near `guide`'s there."""
    r = PATCH // 2
    h, w = source_ok.shape
    y1, x1 = max(0, cy - reach - r), max(0, cx - reach - r)
    y2, x2 = min(h, cy + reach + r + 1), min(w, cx + reach + r + 1)
    ok = source_ok[y1 + r : y2 - r, x1 + r : x2 - r]
    if not ok.any():  # nothing near: look everywhere
        y1, x1, y2, x2 = 0, 0, h, w
        ok = source_ok[r : h - r, r : w - r]
    mask = np.repeat(weight[..., None], 3, axis=2).astype(np.float32)
    window = img[y1:y2, x1:x2]
    scores = cv2.matchTemplate(window, target, cv2.TM_SQDIFF, mask=mask)
    unknown = (~weight).astype(np.float32)
    n = float(unknown.sum())
    if n and GUIDE:
        # Each candidate's mean colour over the pixels it would fill, against the guide's mean there.
        want = guide[~weight].mean(axis=0)
        for c in range(3):
            mean = cv2.matchTemplate(np.ascontiguousarray(window[..., c]), unknown, cv2.TM_CCORR) / n
            scores = scores + GUIDE * n * (mean - want[c]) ** 2
    scores = np.where(ok, scores, np.inf)
    by, bx = np.unravel_index(int(np.argmin(scores)), scores.shape)
    return y1 + int(by) + r, x1 + int(bx) + r


def _vote(image: np.ndarray, hole: np.ndarray, filled: np.ndarray, source: np.ndarray, rounds: int,
          rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Make the fill coherent (Wexler, Shechtman and Irani, "Space-time completion of video", 2007): each hole
    pixel's patch takes the most similar known patch among its current source, its neighbours' sources moved
    alongside and a few random ones nearby (PatchMatch's propagation and search); then each hole pixel becomes the
    mean of what the patches overlapping it copy there. Seams between copied pieces blend; agreeing copies stay
    sharp."""
    h, w = hole.shape
    r = VOTE_PATCH // 2
    ys, xs = np.nonzero(hole)
    if ys.size == 0:
        return filled, source
    img = cv2.copyMakeBorder(image, r, r, r, r, cv2.BORDER_REFLECT).astype(np.float32)
    cur = cv2.copyMakeBorder(filled, r, r, r, r, cv2.BORDER_REFLECT).astype(np.float32)
    # A source centre is usable where its whole patch lies on known pixels inside the image.
    usable = np.zeros((h, w), bool)
    usable[r : h - r, r : w - r] = (cv2.erode((~hole).astype(np.uint8), np.ones((VOTE_PATCH, VOTE_PATCH), np.uint8),
                                              borderValue=0) > 0)[r : h - r, r : w - r]
    if not usable.any():
        return filled, source
    offsets = [(dy, dx) for dy in range(-r, r + 1) for dx in range(-r, r + 1)]
    src = source.copy()
    reach = max(h, w) // 4
    for _ in range(rounds):
        best = src[ys, xs]
        best_cost = _patch_costs(cur, img, ys, xs, best, usable, offsets)
        # Propagation: a neighbour's source, moved by the step to this pixel; then random search, ever closer.
        candidates = [src[np.clip(ys + dy, 0, h - 1), np.clip(xs + dx, 0, w - 1)] - np.int32([dy, dx])
                      for dy, dx in ((0, -1), (-1, 0), (0, 1), (1, 0))]
        radius = reach
        for _ in range(CANDIDATES):
            candidates.append(best + rng.integers(-radius, radius + 1, size=best.shape, dtype=np.int32))
            radius = max(1, radius // 2)
        for cand in candidates:
            cand = np.stack([np.clip(cand[:, 0], 0, h - 1), np.clip(cand[:, 1], 0, w - 1)], axis=-1)
            cost = _patch_costs(cur, img, ys, xs, cand, usable, offsets)
            better = cost < best_cost
            best[better], best_cost[better] = cand[better], cost[better]
        src[ys, xs] = best
        # Voting: every hole pixel's patch with a usable source lays that source's pixels over the hole pixels it
        # covers (a source still in the hole would bring the object back).
        voters = usable[best[:, 0], best[:, 1]]
        vy, vx, vsrc = ys[voters], xs[voters], best[voters]
        total = np.zeros((h, w, 3), np.float32)
        count = np.zeros((h, w), np.float32)
        for dy, dx in offsets:
            ty, tx = vy + dy, vx + dx
            keep = (ty >= 0) & (ty < h) & (tx >= 0) & (tx < w)
            keep[keep] = hole[ty[keep], tx[keep]]
            np.add.at(total, (ty[keep], tx[keep]), img[vsrc[keep, 0] + dy + r, vsrc[keep, 1] + dx + r])
            np.add.at(count, (ty[keep], tx[keep]), 1.0)
        voted = count > 0
        cur[r:-r, r:-r][voted] = total[voted] / count[voted][:, None]
    out = np.clip(np.rint(cur[r:-r, r:-r]), 0, 255).astype(np.uint8)
    return out, src


def _patch_costs(cur: np.ndarray, img: np.ndarray, ys: np.ndarray, xs: np.ndarray, cand: np.ndarray,
                 usable: np.ndarray, offsets: list[tuple[int, int]]) -> np.ndarray:
    """Sum of squared differences between each hole pixel's patch in the current fill and its candidate's known
    patch (inf where the candidate is not usable); both arrays padded by the patch radius."""
    r = VOTE_PATCH // 2
    cy, cx = cand[:, 0], cand[:, 1]
    cost = np.zeros(len(ys), np.float32)
    for dy, dx in offsets:
        diff = cur[ys + dy + r, xs + dx + r] - img[cy + dy + r, cx + dx + r]
        cost += (diff * diff).sum(axis=1)
    cost[~usable[cy, cx]] = np.inf
    return cost


def _smooth_fill(image: np.ndarray, hole: np.ndarray) -> np.ndarray:
    """`image` (float32) with `hole` filled smoothly from its surroundings, with none of their detail: the membrane
    (harmonic) interpolation of the surroundings a little way out from the hole, made on a copy shrunk until the
    hole spans GUIDE_SIDE pixels (each shrunk pixel the mean of a block of the photo)."""
    h, w = hole.shape
    ys, xs = np.nonzero(hole)
    extent = max(np.ptp(xs), np.ptp(ys)) + 1
    scale = min(1.0, GUIDE_SIDE / extent)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    small = cv2.resize(image.astype(np.float32), size, interpolation=cv2.INTER_AREA).reshape(size[1], size[0], -1)
    # The strip along the rim is left out: a shadow or another object's edge there would colour the whole hole. Its
    # width follows the hole's depth (how far its innermost pixel lies from the rim): a thin hole needs its near side.
    depth = float(cv2.distanceTransform(np.pad(hole, 1).astype(np.uint8), cv2.DIST_L2, 5).max())
    gap = round(GUIDE_GAP * depth)
    for grown in (cv2.dilate(hole.astype(np.uint8), _disc(gap)), hole.astype(np.uint8)):
        # A shrunk pixel is known only if all of its pixels are.
        unknown = cv2.resize(grown.astype(np.float32), size, interpolation=cv2.INTER_AREA) > 0
        if not unknown.all():
            break
    else:  # the surroundings are thinner than a shrunk pixel: their mean colour
        return np.where(hole[..., None], image[~hole].astype(np.float32).mean(axis=0), image.astype(np.float32))
    # Started from diffusion (Telea's, close to the membrane but streaked), relaxed by Jacobi iterations of Laplace's
    # equation inside the hole.
    start = cv2.inpaint(np.clip(np.rint(small), 0, 255).astype(np.uint8), unknown.astype(np.uint8), 3,
                        cv2.INPAINT_TELEA)
    small[unknown] = start.reshape(small.shape)[unknown]
    neighbours = np.float32([[0, 0.25, 0], [0.25, 0, 0.25], [0, 0.25, 0]])
    for _ in range(8 * GUIDE_SIDE):
        small[unknown] = cv2.filter2D(small, -1, neighbours, borderType=cv2.BORDER_REPLICATE).reshape(
            small.shape)[unknown]
    up = cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR).reshape(h, w, -1)
    return np.where(hole[..., None], up, image.astype(np.float32))


def _disc(radius: int) -> np.ndarray:
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
