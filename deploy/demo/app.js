// Each button triggers one CSP violation (the page's policy allows only 'self').
const log = (text) => { document.getElementById("log").textContent = text; };

document.getElementById("image").addEventListener("click", () => {
  const img = new Image();
  img.src = "https://images.example.net/pixel.gif?t=" + Date.now();
  document.body.appendChild(img);
  log("requested an image from images.example.net: blocked by img-src");
});

document.getElementById("eval").addEventListener("click", () => {
  try {
    eval("1 + 1");
    log("eval ran (unexpected)");
  } catch (error) {
    log("eval blocked by script-src: " + error.name);
  }
});

document.getElementById("fetch").addEventListener("click", () => {
  fetch("https://api.example.org/collect").catch(() => {
    log("fetch to api.example.org blocked by connect-src");
  });
});

document.getElementById("style").addEventListener("click", () => {
  const p = document.createElement("p");
  p.setAttribute("style", "color: green");
  p.textContent = "an inline style attribute (blocked by style-src-attr)";
  document.body.appendChild(p);
  log("added an element with a style attribute");
});
