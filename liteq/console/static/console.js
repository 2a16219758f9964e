// Live task list: the rows are read again every 1.5 s (without reloading the page).
(function () {
  "use strict";
  var table = document.querySelector("table[data-live]");
  if (!table) { return; }
  var body = document.getElementById("task-rows");
  var busy = false;
  function refresh() {
    if (busy || document.hidden) { return; }
    busy = true;
    fetch(table.getAttribute("data-live"), { credentials: "same-origin" })
      .then(function (response) { return response.ok ? response.text() : null; })
      .then(function (html) { if (html !== null) { body.innerHTML = html; } })
      .catch(function () {})
      .then(function () { busy = false; });
  }
  setInterval(refresh, 1500);
})();
