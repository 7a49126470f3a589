// Live logs of a run: the stored backlog, then each new line as it is written.
(function () {
  const pre = document.getElementById("log");
  if (!pre) return;
  const scheme = location.protocol === "https:" ? "wss://" : "ws://";
  const ws = new WebSocket(scheme + location.host + pre.dataset.stream);
  let follow = true;
  pre.addEventListener("scroll", () => { follow = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 8; });
  ws.onmessage = (msg) => {
    const item = JSON.parse(msg.data);
    if (item.event === "end") {
      const badge = document.getElementById("status");
      if (badge) { badge.textContent = item.status; badge.className = "badge " + item.status; }
      return;
    }
    const span = document.createElement("span");
    span.className = item.stream;
    span.textContent = item.text + "\n";
    pre.appendChild(span);
    if (follow) pre.scrollTop = pre.scrollHeight;
  };
})();
