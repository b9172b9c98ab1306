/**
 * The page served at `/` when `demoPage` is on: subscribe to a topic and watch messages arrive. With
 * authentication on (`auth`), the page takes a token from `?token=` (sent as the `bearer.` subprotocol)
 * and says so instead of connecting without one; a connection refused before it opens (what a browser
 * reports as 1006) is retried with exponential backoff, saying why, instead of every 1–3 s forever.
 */
export function demoPage(wsPath: string, options: { auth?: boolean } = {}): string {
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
  const auth = ${options.auth === true};
  const token = params.get('token');
  let ws;
  let refusals = 0;
  function connect() {
    if (auth && !token) {
      state.textContent = 'this gateway requires a token (authentication is on): open this page with ?token=<JWT>';
      return;
    }
    let opened = false;
    const url = (location.protocol === 'https:' ? 'wss://' : 'ws://') + location.host + ${JSON.stringify(wsPath)};
    ws = token ? new WebSocket(url, ['tormq', 'bearer.' + token]) : new WebSocket(url);
    ws.onopen = () => {
      opened = true;
      refusals = 0;
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
      if (event.code === 1008) {
        state.textContent = 'closed (1008): the token expired or was refused; open this page with a fresh ?token=';
        return;
      }
      if (opened) {
        state.textContent = 'closed (' + event.code + '), reconnecting';
        setTimeout(connect, 1000 + Math.random() * 2000);
        return;
      }
      // Refused before it opened (401/403/503 show as 1006 in a browser): back off, up to a minute.
      refusals++;
      const seconds = Math.min(60, 2 ** refusals);
      const why = auth ? 'the token is invalid or expired, or the origin is not allowed' : 'the gateway is unreachable, full or draining';
      state.textContent = 'refused (' + event.code + ') before opening: ' + why + '; retrying in ' + seconds + ' s';
      setTimeout(connect, seconds * 1000 * (0.75 + Math.random() * 0.5));
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
