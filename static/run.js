// Live logs of a run over the websocket. The page comes with the stored tail of the log; it is kept
// (its colours rendered here), and the socket is asked only for what follows it (?afterSeq=), then
// each line as it is written. stdout and stderr are told apart, ANSI colours are rendered, and the
// view follows the end until the reader scrolls up.
(function () {
  const pre = document.getElementById("log");
  if (!pre) return;
  const state = document.getElementById("log-state");
  const COLORS = ["#0c111d", "#f97066", "#32d583", "#fdb022", "#528bff", "#ee46bc", "#22ccee", "#d0d5dd"];
  const BRIGHT = ["#667085", "#fda29b", "#6ce9a6", "#fec84b", "#84adff", "#f670c7", "#67e3f9", "#ffffff"];
  let follow = true;
  let ended = false;
  pre.addEventListener("scroll", () => { follow = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 8; });

  function render(text, parent) {
    // SGR sequences only: ESC [ ... m; other control sequences are dropped.
    const parts = text.split(/\x1b\[([0-9;]*)m/);
    let style = {};
    parts.forEach((part, i) => {
      if (i % 2 === 1) {
        (part || "0").split(";").map(Number).forEach((code) => {
          if (code === 0) style = {};
          else if (code === 1) style.bold = true;
          else if (code >= 30 && code <= 37) style.color = COLORS[code - 30];
          else if (code >= 90 && code <= 97) style.color = BRIGHT[code - 90];
          else if (code === 39) delete style.color;
        });
        return;
      }
      if (!part) return;
      const span = document.createElement("span");
      span.textContent = part.replace(/\x1b\[[0-9;?]*[A-Za-z]/g, "");
      if (style.color) span.style.color = style.color;
      if (style.bold) span.style.fontWeight = "bold";
      parent.appendChild(span);
    });
  }

  function add(item) {
    const line = document.createElement("span");
    line.className = "line " + item.stream;
    line.dataset.seq = item.seq;
    const ts = document.createElement("span");
    ts.className = "ts";
    ts.textContent = (item.ts || "").slice(11, 23);
    line.appendChild(ts);
    render(item.text, line);
    line.appendChild(document.createTextNode("\n"));
    pre.appendChild(line);
  }

  // The server-rendered lines carry their text raw: render their colours in place.
  pre.querySelectorAll(".line > .text").forEach((text) => {
    const raw = text.textContent;
    text.textContent = "";
    render(raw, text);
  });
  pre.scrollTop = pre.scrollHeight;

  const scheme = location.protocol === "https:" ? "wss://" : "ws://";
  const after = pre.dataset.after || "-1";
  const ws = new WebSocket(scheme + location.host + pre.dataset.stream + "?afterSeq=" + encodeURIComponent(after));
  ws.onopen = () => { if (state) state.textContent = "live"; };
  ws.onmessage = (msg) => {
    const item = JSON.parse(msg.data);
    if (item.event === "end") {
      ended = true;
      if (state) state.textContent = "ended: " + item.status;
      ws.close();  // the client closes first, once it has everything
      document.body.dispatchEvent(new Event("run-ended"));
      return;
    }
    add(item);
    if (follow) pre.scrollTop = pre.scrollHeight;
  };
  // The server closes the stream once it has sent the end: that is not a lost connection.
  ws.onerror = () => { if (state && !ended) state.textContent = "connection lost; reload to reconnect"; };
})();
