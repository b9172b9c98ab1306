/** The page served at `/` when `demoPage` is on: subscribe to a topic and watch messages arrive. */
export function demoPage(wsPath: string): string {
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>tormq demo</title>
<style>
  body { font: 15px/1.4 system-ui, sans-serif; margin: 2rem; max-width: 50rem; }
  #log { list-style: none; padding: 0; font-family: ui-monospace, monospace; font-size: 13px; }
  #log li { border-bottom: 1px solid #eee; padding: .25rem 0; }
  #state { font-weight: bold; }
</style>
</head>
<body>
<h1>tormq</h1>
<p>Connection: <span id="state">connecting…</span></p>
<form id="form">
  <label>Topic <input id="topic" value="demo"></label>
  <button>Subscribe</button>
</form>
<ol id="log"></ol>
<script>
  // The original TORMQ client snippet: connect, subscribe in onopen, read bodies in onmessage.
  const log = document.getElementById('log');
  const state = document.getElementById('state');
  const topicInput = document.getElementById('topic');
  const params = new URLSearchParams(location.search);
  if (params.get('topic')) topicInput.value = params.get('topic');
  let ws;
  function connect() {
    ws = new WebSocket((location.protocol === 'https:' ? 'wss://' : 'ws://') + location.host + ${JSON.stringify(wsPath)});
    ws.onopen = () => {
      state.textContent = 'open';
      ws.send(JSON.stringify({ event: 'subscribe', topic: topicInput.value }));
    };
    ws.onmessage = (event) => {
      const item = document.createElement('li');
      item.className = 'message';
      item.textContent = event.data;
      log.prepend(item);
      while (log.children.length > 200) log.lastChild.remove();
    };
    ws.onclose = (event) => {
      state.textContent = 'closed (' + event.code + '), reconnecting';
      setTimeout(connect, 1000 + Math.random() * 2000);
    };
  }
  document.getElementById('form').onsubmit = (event) => {
    event.preventDefault();
    if (ws && ws.readyState === 1) ws.send(JSON.stringify({ event: 'subscribe', topic: topicInput.value }));
  };
  connect();
</script>
</body>
</html>
`;
}
