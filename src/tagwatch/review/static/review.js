// Keyboard shortcuts of the review app (the only script; the pages work without it).
// Review page: a allow, r remove (submit), 1-9 toggle a category, n focus the note, j / Enter skip to the next.
// Other pages: j / Enter open the next item.
(function () {
  "use strict";
  function typing(el) {
    return el && (el.tagName === "TEXTAREA" || el.tagName === "SELECT" ||
      (el.tagName === "INPUT" && !["checkbox", "radio", "hidden", "submit", "button"].includes(el.type)));
  }
  function submitWith(buttonId) {
    var button = document.getElementById(buttonId);
    if (button) { button.form.requestSubmit(button); }
  }
  document.addEventListener("keydown", function (event) {
    if (event.ctrlKey || event.metaKey || event.altKey) { return; }
    if (typing(event.target)) {
      if (event.key === "Escape") { event.target.blur(); }
      return;
    }
    var page = document.body.dataset.page;
    if (page === "signin") { return; }
    var key = event.key;
    if (page === "review") {
      if (key === "a") { event.preventDefault(); submitWith("allow"); return; }
      if (key === "r") { event.preventDefault(); submitWith("remove"); return; }
      if (key === "n") { event.preventDefault(); document.getElementById("note").focus(); return; }
      if (/^[1-9]$/.test(key)) {
        var box = document.getElementById("cat-" + key);
        if (box) { event.preventDefault(); box.checked = !box.checked; }
        return;
      }
      if (key === "j" || (key === "Enter" && event.target.tagName !== "BUTTON")) {
        event.preventDefault();
        document.getElementById("skip").requestSubmit();
      }
      return;
    }
    if (key === "j" || (key === "Enter" && event.target.tagName !== "BUTTON" && event.target.tagName !== "A")) {
      event.preventDefault();
      window.location.assign("/review/next");
    }
  });
})();
