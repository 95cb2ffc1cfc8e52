// The rule-set editor: a line-number gutter, and each problem the server found (htmx swaps in
// #validation as you type) drawn at its line: the number turns red and the message sits on the
// line itself. Clicking a problem in the list selects its line. No framework: the server's
// fragment is the only source of truth; this only lays it over the textarea.
(function () {
  "use strict";

  function problemsByLine() {
    const byLine = new Map();
    document.querySelectorAll("#validation .problem[data-line]").forEach(function (item) {
      const line = Number(item.dataset.line);
      const messages = Array.from(item.querySelectorAll(".message-text")).map(function (m) {
        return m.textContent.trim();
      });
      byLine.set(line, (byLine.get(line) || []).concat(messages));
    });
    return byLine;
  }

  function setUp(editor) {
    const textarea = editor.querySelector("textarea");
    const gutter = editor.querySelector(".gutter");
    const layer = editor.querySelector(".lint-layer");
    let problems = problemsByLine();

    function metrics() {
      const style = getComputedStyle(textarea);
      return { lineHeight: parseFloat(style.lineHeight) || 20, top: parseFloat(style.paddingTop) || 0 };
    }

    function draw() {
      const count = textarea.value.split("\n").length;
      const numbers = [];
      for (let line = 1; line <= count; line++) {
        const number = document.createElement("span");
        number.className = "ln";
        number.dataset.line = String(line);
        number.textContent = String(line);
        if (problems.has(line)) {
          number.classList.add("err");
          number.title = problems.get(line).join("\n");
        }
        numbers.push(number);
      }
      gutter.replaceChildren.apply(gutter, numbers);
      const { lineHeight, top } = metrics();
      const bands = [];
      problems.forEach(function (messages, line) {
        if (line > count) return;
        const band = document.createElement("div");
        band.className = "lint-band";
        band.dataset.line = String(line);
        band.style.top = top + (line - 1) * lineHeight + "px";
        band.style.height = lineHeight + "px";
        const message = document.createElement("span");
        message.className = "lint-message";
        message.textContent = messages.join("; ");
        band.appendChild(message);
        bands.push(band);
      });
      layer.replaceChildren.apply(layer, bands);
      follow();
    }

    function follow() {
      gutter.scrollTop = textarea.scrollTop;
      layer.style.transform = "translateY(" + -textarea.scrollTop + "px)";
    }

    function selectLine(line) {
      const lines = textarea.value.split("\n");
      let start = 0;
      for (let i = 0; i < line - 1 && i < lines.length; i++) start += lines[i].length + 1;
      const end = start + (lines[line - 1] || "").length;
      textarea.focus();
      textarea.setSelectionRange(start, end);
      textarea.scrollTop = Math.max(0, (line - 3) * metrics().lineHeight);
      follow();
    }

    textarea.addEventListener("input", draw);
    textarea.addEventListener("scroll", follow);
    // htmx:load fires for every piece of content htmx adds, including the swapped-in #validation.
    document.body.addEventListener("htmx:load", function () {
      problems = problemsByLine();
      draw();
    });
    editor.closest("form").addEventListener("click", function (event) {
      const item = event.target.closest("#validation .problem[data-line]");
      if (item) selectLine(Number(item.dataset.line));
    });
    draw();
  }

  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("[data-editor]").forEach(setUp);
  });
})();
