/**
 * The page served at `/` when `demoPage` is on: the tormq client the gateway serves at
 * `/tormq-client.js` subscribes (with recovery) to a topic and shows each message with its stream
 * position, and the connection's state. `?topic=` picks the topic, `?token=` a JWT for gateways with
 * authentication: with authentication on (`auth`) and no token, the page says so instead of connecting
 * (the client's backoff would only be refused, seen in a browser as 1006).
 */
import { CLIENT_MODULE_PATH } from './client-module.js';

export function demoPage(wsPath: string, options: { auth?: boolean } = {}): string {
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>tormq demo</title>
<style>
  body { font: 15px/1.4 system-ui, sans-serif; margin: 2rem; max-width: 56rem; }
  #log { list-style: none; padding: 0; font-family: ui-monospace, monospace; font-size: 13px; }
  #log li { border-bottom: 1px solid #eee; padding: .25rem 0; }
  #log li.notice { color: #a40; }
  #log .position { color: #777; margin-right: .75rem; }
  #state, #subscription { font-weight: bold; }
</style>
</head>
<body>
<h1>tormq</h1>
<p>Connection: <span id="state">disconnected</span> · Subscription: <span id="subscription">none</span></p>
<form id="form">
  <label>Topic <input id="topic" value="demo"></label>
  <button>Subscribe</button>
</form>
<ol id="log"></ol>
<script type="module">
  import { TormqClient } from ${JSON.stringify(CLIENT_MODULE_PATH)};

  const log = document.getElementById('log');
  const state = document.getElementById('state');
  const subscription = document.getElementById('subscription');
  const topicInput = document.getElementById('topic');
  const params = new URLSearchParams(location.search);
  if (params.get('topic')) topicInput.value = params.get('topic');
  const token = params.get('token');
  const auth = ${options.auth === true};

  const client = new TormqClient((location.protocol === 'https:' ? 'wss://' : 'ws://') + location.host + ${JSON.stringify(wsPath)}, {
    getToken: token ? () => token : undefined,
    maxReconnectDelay: 5000,
  });
  client.on('state', (s) => { if (!(auth && !token)) state.textContent = s; });
  client.on('error', (error) => console.warn('tormq:', error.code, error.message));
  globalThis.tormqClient = client;

  function show(item) {
    log.prepend(item);
    while (log.children.length > 1000) log.lastChild.remove();
  }
  function notice(text) {
    const item = document.createElement('li');
    item.className = 'notice';
    item.textContent = text;
    show(item);
  }

  let sub = null;
  function subscribe(topic) {
    sub?.unsubscribe();
    subscription.textContent = 'subscribing to ' + topic;
    sub = client.subscribe(topic, { recover: true });
    sub.on('publication', ({ topic, data, epoch, offset }) => {
      const item = document.createElement('li');
      item.className = 'message';
      item.dataset.topic = topic;
      item.dataset.epoch = epoch;
      item.dataset.offset = String(offset);
      const position = document.createElement('span');
      position.className = 'position';
      position.textContent = topic + ' #' + offset;
      const body = document.createElement('span');
      body.className = 'data';
      body.textContent = JSON.stringify(data);
      item.append(position, body);
      show(item);
    });
    sub.on('subscribed', ({ recovered, wasRecovering }) => {
      subscription.textContent = topic + (wasRecovering ? (recovered ? ' (recovered)' : ' (not recovered)') : '');
    });
    sub.on('gap', () => notice('gap: messages were lost; an application would reload its state here'));
    sub.on('error', (error) => notice('error: ' + error.code + ' ' + error.message));
  }

  document.getElementById('form').onsubmit = (event) => {
    event.preventDefault();
    try {
      subscribe(topicInput.value);
    } catch (error) {
      notice(String(error.message));
    }
  };
  if (auth && !token) {
    state.textContent = 'this gateway requires a token (authentication is on): open this page with ?token=<JWT>';
  } else {
    subscribe(topicInput.value);
    client.connect();
  }
</script>
</body>
</html>
`;
}
