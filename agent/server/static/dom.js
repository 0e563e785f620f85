// One small helper to build elements: el("button", {class: "primary", onclick}, "Send").

export function el(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === null || value === undefined || value === false) continue;
    if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else if (name === "dataset") Object.assign(node.dataset, value);
    else if (name in node && typeof value !== "string") node[name] = value;
    else node.setAttribute(name, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child !== null && child !== undefined && child !== false) node.append(child);
  }
  return node;
}

/** Text with its @aliases as spans (they read as references). */
export function withAliases(text) {
  const parts = String(text || "").split(/(@[a-z]+\d+)/g);
  return parts.map((part, i) => (i % 2 ? el("span", { class: "alias" }, part) : part));
}
