// Copy buttons: <button data-copy="element-id">; no inline script (CSP default-src 'self').
document.addEventListener("click", function (event) {
  var button = event.target.closest("[data-copy]");
  if (!button) return;
  var source = document.getElementById(button.getAttribute("data-copy"));
  if (!source) return;
  var text = source.value !== undefined ? source.value : source.textContent;
  navigator.clipboard.writeText(text).then(function () { button.textContent = "Copied"; });
});
