// The annotator's keyboard: the whole flow works without a mouse.
//   1–8   a point on the scale (1 = A significantly better … 8 = B significantly better)
//   Q / W response A safe / unsafe;  O / P response B safe / unsafe (safety focus)
//   Enter submit the judgement; in a message box, send it (Shift+Enter for a new line)
//   Esc   leave a text box, so that the keys above work again
(function () {
  "use strict";

  const SAFETY_KEYS = { q: ["safe_a", "safe"], w: ["safe_a", "unsafe"], o: ["safe_b", "safe"], p: ["safe_b", "unsafe"] };
  let judgementShownAt = null;

  function judgementForm() {
    return document.getElementById("judgement-form");
  }

  function isTextField(element) {
    return element && (element.tagName === "TEXTAREA" ||
      (element.tagName === "INPUT" && ["text", "search", "email", "password"].includes(element.type)));
  }

  function check(form, name, value) {
    const input = form.querySelector(`input[name="${name}"][value="${value}"]`);
    if (input) {
      input.checked = true;
      input.focus({ preventScroll: true });
    }
  }

  function submit(form) {
    if (form.dataset.submitting === "1") return; // the server is idempotent anyway
    form.dataset.submitting = "1";
    // A form swapped in a moment ago may not be wired to htmx yet; processing twice is harmless.
    if (window.htmx) window.htmx.process(form);
    form.requestSubmit();
  }

  document.addEventListener("keydown", function (event) {
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    const target = event.target;
    if (isTextField(target)) {
      if (event.key === "Escape") {
        target.blur();
      } else if (event.key === "Enter" && !event.shiftKey && target.hasAttribute("data-submit-on-enter")) {
        event.preventDefault();
        if (target.value.trim()) submit(target.form);
      }
      return;
    }
    const form = judgementForm();
    if (!form) return;
    const key = event.key.toLowerCase();
    if (/^[1-8]$/.test(key)) {
      event.preventDefault();
      check(form, "point", key);
    } else if (key in SAFETY_KEYS) {
      event.preventDefault();
      check(form, SAFETY_KEYS[key][0], SAFETY_KEYS[key][1]);
    } else if (key === "enter" && (target === document.body || form.contains(target))) {
      if (target.tagName === "BUTTON" || target.tagName === "SUMMARY") return; // their own Enter
      event.preventDefault();
      submit(form);
    }
  });

  document.addEventListener("submit", function (event) {
    const form = event.target;
    if (form.id === "judgement-form" && judgementShownAt !== null) {
      form.elements.time_spent_ms.value = String(Math.round(performance.now() - judgementShownAt));
    }
  }, true);

  // After each swap: note when judging opened, and put the focus where the next key goes.
  function settle() {
    const form = judgementForm();
    if (form) {
      if (!form.dataset.shown) {
        form.dataset.shown = "1";
        judgementShownAt = performance.now();
        form.querySelector("input[name=point]").focus({ preventScroll: true });
      }
      return;
    }
    judgementShownAt = null;
    // Only when nothing holds the focus (what held it was swapped away): a late swap must not take
    // it from a button or field the annotator moved to.
    const box = document.querySelector("textarea[data-submit-on-enter]");
    const held = document.activeElement;
    if (box && (!held || held === document.body)) box.focus();
  }

  document.addEventListener("htmx:afterSettle", settle);
  document.addEventListener("DOMContentLoaded", settle);
})();
