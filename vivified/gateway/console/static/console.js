// Vivified console: the little script the pages need (no inline script: CSP forbids it).
(function () {
  "use strict";
  function copy(button) {
    var field = document.getElementById(button.getAttribute("data-copy"));
    var status = button.parentNode.querySelector(".copied");
    if (!field) { return; }
    field.select();
    var done = function () { if (status) { status.textContent = "Copied."; } };
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(field.value).then(done, function () {
        if (status) { status.textContent = "Select the token and copy it by hand."; }
      });
    } else {
      try { document.execCommand("copy"); done(); } catch (e) { /* select() is enough */ }
    }
  }
  document.addEventListener("click", function (event) {
    var button = event.target.closest ? event.target.closest("button[data-copy]") : null;
    if (button) { copy(button); }
  });
  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("time.epoch").forEach(function (el) {
      var when = new Date(parseFloat(el.getAttribute("data-epoch")) * 1000);
      if (!isNaN(when)) {
        el.setAttribute("datetime", when.toISOString());
        el.textContent = when.toISOString().slice(0, 19).replace("T", " ") + " UTC";
      }
    });
  });
})();
