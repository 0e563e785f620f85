// How an artifact shows: an image; a mask as an overlay on its source, toggled; a video in a player; per-frame
// masks over their source video's player, frame by frame; a download link for each.

import { el } from "./dom.js";

const PREVIEWED = new Set(["image", "mask", "video", "masks"]);

export function previewable(entry) {
  return PREVIEWED.has(entry.kind) && Boolean(entry.url);
}

/** The source image or video a mask was made from: its first parent of that kind. */
function sourceOf(entry, lookup) {
  const wanted = entry.kind === "masks" ? "video" : "image";
  for (const alias of entry.parents || []) {
    const parent = lookup(alias);
    if (parent && parent.kind === wanted && parent.url) return parent;
  }
  return null;
}

function download(entry) {
  return el("a", { href: entry.url, download: `${entry.alias || entry.sha256.slice(0, 12)}`, class: "download" },
    "Download");
}

/** "image segmentation of @img1" (what made it, from what), from the history's entry; "upload" for an upload. */
export function lineageText(entry) {
  if (!entry.made_by) return entry.kind;
  const source = entry.made_by === "upload" ? "uploaded" : entry.made_by.replace(/_/g, " ");
  const of = (entry.parents || []).length ? ` of ${entry.parents.map((p) => `@${p}`).join(", ")}` : "";
  return `${entry.kind}, ${source}${of}`;
}

/** A figure for an artifact; `lookup(alias)` finds the thread's other artifacts (a mask's source). */
export function artifactView(entry, lookup) {
  const name = entry.alias ? `@${entry.alias}` : entry.kind;
  const caption = el("figcaption", {}, entry.alias ? el("span", { class: "alias" }, name) : null, " ",
    el("span", { class: "lineage" }, lineageText(entry)));
  const figure = el("figure", { class: `artifact ${entry.kind}`, dataset: { alias: entry.alias || "", sha256: entry.sha256 } });
  if (!entry.url) return el("figure", { class: "artifact" }, caption);
  const source = entry.kind === "mask" || entry.kind === "masks" ? sourceOf(entry, lookup) : null;
  if (entry.kind === "image") {
    figure.append(el("div", { class: "stage" }, el("img", { src: entry.url, alt: `${name}, ${entry.shape.slice(0, 2).reverse().join("×")}` })));
  } else if (entry.kind === "mask") {
    figure.append(maskOverImage(entry, source, name));
  } else if (entry.kind === "video") {
    figure.append(el("div", { class: "stage" }, el("video", { src: entry.url, controls: true, preload: "metadata", muted: true, playsinline: true })));
  } else if (entry.kind === "masks" && source) {
    figure.append(masksOverVideo(entry, source, name));
  }
  caption.append(" ", download(entry));
  figure.append(caption);
  return figure;
}

function toggle(stage, label) {
  const button = el("button", { type: "button", class: "toggle", "aria-pressed": "true" }, `Hide ${label}`);
  button.addEventListener("click", () => {
    const shown = stage.classList.toggle("masked-off") === false;
    button.setAttribute("aria-pressed", String(shown));
    button.textContent = `${shown ? "Hide" : "Show"} ${label}`;
  });
  return button;
}

function maskOverImage(entry, source, name) {
  if (!source) {
    return el("div", { class: "stage" }, el("img", { src: entry.url, alt: `${name}, a mask` }));
  }
  const overlay = el("div", { class: "overlay", role: "img", "aria-label": `${name} over @${source.alias}` });
  overlay.style.maskImage = overlay.style.webkitMaskImage = `url("${entry.url}")`;
  const stage = el("div", { class: "stage" },
    el("img", { src: source.url, alt: `@${source.alias} under ${name}` }), overlay);
  return el("div", { class: "with-toggle" }, stage, toggle(stage, "mask"));
}

function masksOverVideo(entry, source, name) {
  const frames = entry.shape[0] || 1;
  const [height, width] = entry.shape.slice(1, 3);
  const video = el("video", { src: source.url, controls: true, preload: "auto", muted: true, playsinline: true });
  const canvas = el("canvas", { class: "overlay", width, height, role: "img", "aria-label": `${name} over @${source.alias}` });
  const stage = el("div", { class: "stage video" }, video, canvas);
  const cache = new Map();
  const g = canvas.getContext("2d", { willReadFrequently: true });
  let shown = -1;

  function tinted(index) {
    if (!cache.has(index)) {
      cache.set(index, new Promise((resolve, reject) => {
        const image = new Image();
        image.onload = () => {
          const c = el("canvas", { width, height });
          const cg = c.getContext("2d", { willReadFrequently: true });
          cg.drawImage(image, 0, 0);
          const pixels = cg.getImageData(0, 0, width, height);
          for (let i = 0; i < pixels.data.length; i += 4) {
            const on = pixels.data[i] > 127;
            pixels.data.set(on ? [255, 64, 160, 140] : [0, 0, 0, 0], i);
          }
          cg.putImageData(pixels, 0, 0);
          resolve(c);
        };
        image.onerror = reject;
        image.src = `${entry.url}&frame=${index}`;
      }));
    }
    return cache.get(index);
  }

  async function draw(time) {
    const fps = video.duration ? frames / video.duration : 8;
    const index = Math.min(frames - 1, Math.max(0, Math.floor(time * fps + 1e-3)));
    if (index === shown) return;
    shown = index;
    const layer = await tinted(index).catch(() => null);
    if (layer && shown === index) {
      g.clearRect(0, 0, width, height);
      g.drawImage(layer, 0, 0);
      canvas.dataset.frame = String(index);
    }
  }

  const onFrame = (_now, meta) => {
    draw(meta.mediaTime);
    video.requestVideoFrameCallback(onFrame);
  };
  video.requestVideoFrameCallback(onFrame);
  video.addEventListener("seeked", () => draw(video.currentTime));
  video.addEventListener("loadeddata", () => draw(video.currentTime));
  return el("div", { class: "with-toggle" }, stage, toggle(stage, "masks"));
}
