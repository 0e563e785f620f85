// Region sketching over an image or a chosen frame of a video: a box, positive and negative points, or a scribble,
// drawn with a pointer or typed as text, undone step by step, cleared, and turned into the turn's region.

const TOOLS = ["box", "positive", "negative", "scribble"];
const KIND_OF_TOOL = { box: "box", positive: "points", negative: "points", scribble: "scribble" };

export class Sketch {
  /** `canvas` lies over the media; `width`×`height` are the media's own pixels; `onChange` hears every change. */
  constructor(canvas, width, height, onChange = () => {}) {
    this.canvas = canvas;
    this.width = canvas.width = width;
    this.height = canvas.height = height;
    this.onChange = onChange;
    this.tool = "box";
    this.state = { box: null, points: [], strokes: [] };
    this.undoStack = [];
    this.drag = null;
    canvas.addEventListener("pointerdown", (e) => this.down(e));
    canvas.addEventListener("pointermove", (e) => this.move(e));
    canvas.addEventListener("pointerup", (e) => this.up(e));
    canvas.addEventListener("pointercancel", () => (this.drag = null));
    this.redraw();
  }

  /** The kind of region drawn so far: "box", "points", "scribble", or null. */
  get kind() {
    const { box, points, strokes } = this.state;
    return box ? "box" : points.length ? "points" : strokes.length ? "scribble" : null;
  }

  setTool(tool) {
    if (!TOOLS.includes(tool)) throw new Error(`no tool ${tool}`);
    this.tool = tool;
  }

  /** Remember the state before a change (for undo); a mark of another kind replaces what was drawn. */
  begin(tool) {
    this.undoStack.push(structuredClone(this.state));
    if (this.kind && this.kind !== KIND_OF_TOOL[tool]) this.state = { box: null, points: [], strokes: [] };
  }

  undo() {
    if (!this.undoStack.length) return;
    this.state = this.undoStack.pop();
    this.changed();
  }

  clear() {
    if (!this.kind) return;
    this.undoStack.push(structuredClone(this.state));
    this.state = { box: null, points: [], strokes: [] };
    this.changed();
  }

  changed() {
    this.redraw();
    this.onChange(this);
  }

  at(event) {
    const rect = this.canvas.getBoundingClientRect();
    const x = ((event.clientX - rect.left) / rect.width) * this.width;
    const y = ((event.clientY - rect.top) / rect.height) * this.height;
    return { x: clamp(x, 0, this.width), y: clamp(y, 0, this.height) };
  }

  down(event) {
    if (event.button !== 0) return;
    event.preventDefault();
    this.canvas.setPointerCapture(event.pointerId);
    const p = this.at(event);
    this.begin(this.tool);
    if (this.tool === "box") {
      this.drag = { tool: "box", from: p };
      this.state.box = [p.x, p.y, p.x, p.y];
    } else if (this.tool === "scribble") {
      this.drag = { tool: "scribble" };
      this.state.strokes.push([p]);
    } else {
      this.state.points.push({ x: p.x, y: p.y, label: this.tool === "positive" ? 1 : 0 });
      this.changed();
      return;
    }
    this.redraw();
  }

  move(event) {
    if (!this.drag) return;
    const p = this.at(event);
    if (this.drag.tool === "box") {
      const { from } = this.drag;
      this.state.box = [Math.min(from.x, p.x), Math.min(from.y, p.y), Math.max(from.x, p.x), Math.max(from.y, p.y)];
    } else {
      this.state.strokes[this.state.strokes.length - 1].push(p);
    }
    this.redraw();
  }

  up(event) {
    if (!this.drag) return;
    this.move(event);
    const box = this.state.box;
    if (this.drag.tool === "box" && box && (box[2] - box[0] < 1 || box[3] - box[1] < 1)) {
      this.state = this.undoStack.pop(); // a click, not a box
    }
    this.drag = null;
    this.changed();
  }

  /** The region as text: "x1, y1, x2, y2" for a box, "+x,y -x,y" for points, "scribble" for a scribble. */
  toText() {
    const { box, points } = this.state;
    if (box) return box.map((v) => Math.round(v)).join(", ");
    if (points.length) return points.map((p) => `${p.label ? "+" : "-"}${Math.round(p.x)},${Math.round(p.y)}`).join(" ");
    return this.kind === "scribble" ? "scribble" : "";
  }

  /** Set the region from text (see toText); an error names what was wrong. */
  fromText(text) {
    text = text.trim();
    if (!text || text === "scribble") {
      if (!text) this.clear();
      return;
    }
    const pointMatches = [...text.matchAll(/([+-])\s*(\d+(?:\.\d+)?)\s*,\s*(\d+(?:\.\d+)?)/g)];
    const numbers = text.split(/[\s,]+/).filter(Boolean).map(Number);
    if (pointMatches.length && /^[-+\d.,\s]+$/.test(text) && /[+-]/.test(text[0])) {
      const points = pointMatches.map(([, sign, x, y]) => ({ x: +x, y: +y, label: sign === "+" ? 1 : 0 }));
      for (const p of points) this.inside(p.x, p.y);
      this.begin("positive");
      this.state.points = points;
    } else if (numbers.length === 4 && numbers.every(Number.isFinite)) {
      const [x1, y1, x2, y2] = numbers;
      if (!(x2 > x1 && y2 > y1)) throw new Error("a box is x1, y1, x2, y2 with x2 > x1 and y2 > y1");
      this.inside(x1, y1);
      this.inside(x2, y2);
      this.begin("box");
      this.state.box = [x1, y1, x2, y2];
    } else {
      throw new Error('type a box as "x1, y1, x2, y2", or points as "+x,y -x,y"');
    }
    this.changed();
  }

  inside(x, y) {
    if (x < 0 || y < 0 || x > this.width || y > this.height) {
      throw new Error(`(${x}, ${y}) is outside the ${this.width}×${this.height} picture`);
    }
  }

  /** The turn's region as the API takes it; a scribble is uploaded as a mask first (with `upload(blob)`). */
  async region(upload) {
    const { box, points } = this.state;
    if (box) return { kind: "box", box: box.map((v) => Math.round(v)) };
    if (points.length) {
      if (!points.some((p) => p.label === 1)) throw new Error("add a + point on the object: − points only mark what to leave out");
      return { kind: "points", points: points.map((p) => [Math.round(p.x), Math.round(p.y)]), labels: points.map((p) => p.label) };
    }
    if (this.kind === "scribble") {
      const mask = await upload(await this.scribbleMask(), "mask");
      return { kind: "scribble", mask: { sha256: mask.sha256, kind: mask.kind, media_type: mask.media_type, shape: mask.shape } };
    }
    return null;
  }

  /** The scribble as a black and white PNG of the media's own size. */
  scribbleMask() {
    const canvas = document.createElement("canvas");
    canvas.width = this.width;
    canvas.height = this.height;
    const g = canvas.getContext("2d");
    g.fillStyle = "#000";
    g.fillRect(0, 0, this.width, this.height);
    this.strokePaths(g, "#fff");
    return new Promise((resolve) => canvas.toBlob((blob) => resolve(new File([blob], "scribble.png", { type: "image/png" })), "image/png"));
  }

  brush() {
    return Math.max(2, Math.round(Math.min(this.width, this.height) / 30));
  }

  strokePaths(g, colour) {
    g.strokeStyle = colour;
    g.fillStyle = colour;
    g.lineWidth = this.brush();
    g.lineCap = g.lineJoin = "round";
    for (const stroke of this.state.strokes) {
      g.beginPath();
      g.moveTo(stroke[0].x, stroke[0].y);
      for (const p of stroke.slice(1)) g.lineTo(p.x, p.y);
      if (stroke.length === 1) g.lineTo(stroke[0].x + 0.01, stroke[0].y);
      g.stroke();
    }
  }

  redraw() {
    const g = this.canvas.getContext("2d");
    const scale = this.width / Math.max(1, this.canvas.clientWidth || this.width); // media pixels per screen pixel
    g.clearRect(0, 0, this.width, this.height);
    this.strokePaths(g, "rgba(255, 200, 0, 0.6)");
    const { box, points } = this.state;
    if (box) {
      g.lineWidth = 2 * scale;
      g.strokeStyle = "#000";
      g.strokeRect(box[0], box[1], box[2] - box[0], box[3] - box[1]);
      g.setLineDash([5 * scale, 4 * scale]);
      g.strokeStyle = "#ffd400";
      g.strokeRect(box[0], box[1], box[2] - box[0], box[3] - box[1]);
      g.setLineDash([]);
    }
    for (const p of points) {
      g.beginPath();
      g.arc(p.x, p.y, 8 * scale, 0, 2 * Math.PI);
      g.fillStyle = p.label ? "#1a9c3a" : "#c62828";
      g.fill();
      g.lineWidth = 2 * scale;
      g.strokeStyle = "#fff";
      g.stroke();
      g.beginPath();
      g.moveTo(p.x - 4 * scale, p.y);
      g.lineTo(p.x + 4 * scale, p.y);
      if (p.label) {
        g.moveTo(p.x, p.y - 4 * scale);
        g.lineTo(p.x, p.y + 4 * scale);
      }
      g.stroke();
    }
  }
}

function clamp(v, lo, hi) {
  return Math.min(hi, Math.max(lo, v));
}
