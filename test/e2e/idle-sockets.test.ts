/**
 * Hostile input (issue 10, item 5): TCP connections that never send a byte. ~19,900 of them under a
 * 20,000 open-files limit were not counted by anything; while held, new clients failed and the admin
 * port could not even accept /healthz. Reproduced under a low limit (`ulimit -n 1024`): more idle
 * sockets than the gateway has descriptors. The gateway counts every socket from accept against its
 * socket budget (the limit less what it holds less --fd-reserve), closes the oldest idle one to make
 * room, and closes whatever has not completed a handshake within --handshake-timeout-ms. Meanwhile
 * /healthz answers, bystanders keep receiving, a new client connects, and the counters show it.
 * The MPC likewise: idle connections flooding its publisher port under `ulimit -n 256` once left its
 * admin port, HTTP ingress and gateway port accepting nothing, silently. Its HTTP ingress and gRPC
 * port have their own shares too.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import http2 from 'node:http2';
import net from 'node:net';
import { ADMIN_MAX_CONNECTIONS } from '../../src/admin-server.js';
import { Publisher } from '../../src/index.js';
import { PythonGrpcClient } from '../helpers/grpc-python-client.js';
import { clientsOnEveryWorker, metricValue, metricsText, until } from '../helpers/probes.js';
import { startGatewayProcess, startMpcProcess, type GatewayProcess, type GatewayStats, type MpcProcess } from '../helpers/processes.js';
import { useSystem } from '../helpers/system.js';
import { TestClient } from '../helpers/ws-client.js';

const FILE_LIMIT = 1024;
/** More than the gateway has descriptors for. */
const IDLE = 1100;
/** The default: opening all of them takes well under it, so the budget is reached before any times out. */
const HANDSHAKE_TIMEOUT_MS = 5000;

type Stats = GatewayStats & { sockets: number; socketLimit: number };
const total = (stats: GatewayStats, key: string) => stats.workers.reduce((n, w) => n + (w[key] as number), 0);

describe(`hostile input: ${IDLE} idle TCP connections against a gateway with ulimit -n ${FILE_LIMIT}`, () => {
  const sys = useSystem({ gatewayFileLimit: FILE_LIMIT });
  const idle: net.Socket[] = [];
  let bystanders: TestClient[];

  before(async () => {
    const byWorker = await clientsOnEveryWorker(sys.gateway, 'bystander-', 2, sys.clients);
    bystanders = [...byWorker.values()].flat().map((entry) => entry.client);
    for (const bystander of bystanders) await bystander.subscribe('bystander');
    await sys.publisher.ready({ topic: 'bystander', timeoutMs: 10_000 });
  });

  after(() => {
    for (const socket of idle) socket.destroy();
  });

  const served = async (clients: TestClient[], text: string) => {
    const from = clients.map((c) => c.messages.length);
    await sys.publisher.send('bystander', text);
    for (const [i, client] of clients.entries()) await client.waitFor((m) => m.includes(`"${text}"`), from[i]);
  };

  test('the socket budget holds: /healthz answers, bystanders are served, a new client connects; idle sockets are shed, then timed out', async (t) => {
    const ready = await sys.gateway.waitForLog((l) => l.msg === 'gateway ready');
    const budget = ready.socketBudget as { fileLimit: number; inUse: number; reserve: number; limit: number };
    assert.equal(budget.fileLimit, FILE_LIMIT);
    assert.equal(budget.reserve, 128);
    assert.equal(budget.limit, FILE_LIMIT - budget.inUse - budget.reserve);
    assert.ok(budget.limit > bystanders.length && budget.limit < IDLE, `socket limit ${budget.limit}`);
    const before = (await sys.gateway.stats()) as Stats;
    assert.equal(before.socketLimit, budget.limit);
    t.diagnostic(`open-files limit ${budget.fileLimit}, ${budget.inUse} in use at start, reserve ${budget.reserve}: socket budget ${budget.limit}`);

    let closedByServer = 0;
    for (let i = 0; i < IDLE; i++) {
      const socket = net.connect({ host: '127.0.0.1', port: sys.gateway.port });
      socket.on('error', () => {});
      socket.once('close', () => closedByServer++);
      idle.push(socket);
      await new Promise((resolve) => socket.once('connect', resolve));
    }

    // While they are held (the first ones time out 5 s after they were opened). The gateway may still
    // be accepting the last of them: once it has, it holds no more sockets than its budget.
    await until('sockets within the budget', async () => ((await sys.gateway.stats()) as Stats).sockets <= budget.limit);
    const health = await sys.gateway.admin('/healthz');
    assert.equal(health.status, 200, 'the admin port still accepts');
    await served(bystanders, 'while idle sockets are held');
    const newcomer = await sys.connect();
    await newcomer.subscribe('bystander');
    await served([...bystanders, newcomer], 'to the newcomer too');
    const during = (await sys.gateway.stats()) as Stats;
    assert.ok(total(during, 'socketsShed') - total(before, 'socketsShed') >= IDLE - budget.limit, `shed: ${total(during, 'socketsShed')}`);
    assert.ok(during.sockets <= budget.limit, `sockets held ${during.sockets} of ${budget.limit}`);
    const metrics = await metricsText(sys.gateway);
    assert.equal(metricValue(metrics, 'tormq_gateway_socket_limit'), budget.limit);
    assert.ok(metricValue(metrics, 'tormq_gateway_sockets')! <= budget.limit);
    assert.equal(metricValue(metrics, 'tormq_mpc_up', { endpoint: `tcp://127.0.0.1:${sys.mpc.gatewayPort}` }), 1);

    // Not one of them completes a handshake: the gateway closes every one.
    await until('every idle socket closed by the gateway', () => closedByServer === IDLE, HANDSHAKE_TIMEOUT_MS + 10_000);
    const after = (await sys.gateway.stats()) as Stats;
    const timedOut = total(after, 'handshakeTimeouts') - total(before, 'handshakeTimeouts');
    const shed = total(after, 'socketsShed') - total(before, 'socketsShed');
    assert.ok(timedOut > 0, 'the ones left were timed out');
    assert.equal(timedOut + shed, IDLE, `timed out ${timedOut} + shed ${shed}`);
    t.diagnostic(`${IDLE} idle sockets: ${shed} shed at the budget, ${timedOut} timed out`);
    await until('only the WebSocket connections left', async () => ((await sys.gateway.stats()) as Stats).sockets === bystanders.length + 1);
    assert.ok([...bystanders, newcomer].every((c) => c.closeCode === null));
    assert.deepEqual(after.workers.map((w) => w.restarts), after.workers.map(() => 0));
    await served([...bystanders, newcomer], 'after');
    assert.equal((await sys.gateway.admin('/healthz')).status, 200);
  });

  test(`a flood of the admin port is capped at ${ADMIN_MAX_CONNECTIONS}: /healthz answers, bystanders are served, a new client connects`, async () => {
    // The admin port lives on the descriptors the gateway keeps in reserve (--fd-reserve); before, it
    // had no cap, and 1,100 idle connections to it left no descriptor for a new WebSocket client.
    const flood: net.Socket[] = [];
    try {
      for (let i = 0; i < IDLE; i++) {
        const socket = net.connect({ host: '127.0.0.1', port: sys.gateway.adminPort });
        socket.on('error', () => {});
        flood.push(socket);
        await new Promise((resolve) => socket.once('connect', resolve));
      }
      const stats = () => sys.gateway.stats() as Promise<Stats & { adminConnections: { open: number; shed: number; refused: number; limit: number } }>;
      await until('admin connections shed at the cap', async () => (await stats()).adminConnections.shed >= IDLE - ADMIN_MAX_CONNECTIONS);
      const during = (await stats()).adminConnections;
      assert.ok(during.open <= ADMIN_MAX_CONNECTIONS && during.limit === ADMIN_MAX_CONNECTIONS, JSON.stringify(during));
      assert.equal(during.refused, 0, 'idle ones made room for every request');
      assert.equal((await sys.gateway.admin('/healthz')).status, 200);
      const metrics = await metricsText(sys.gateway);
      assert.ok(metricValue(metrics, 'tormq_admin_connections_shed_total')! >= IDLE - ADMIN_MAX_CONNECTIONS, 'the shed in /metrics too');
      assert.equal(metricValue(metrics, 'tormq_admin_connections_refused_total'), 0);
      await sys.gateway.waitForLog((line) => typeof line.msg === 'string' && line.msg.startsWith('admin port:') && line.msg.includes('to make room'));
      const newcomer = await sys.connect();
      await newcomer.subscribe('bystander');
      await served([...bystanders, newcomer], 'during the admin flood');
    } finally {
      for (const socket of flood) socket.destroy();
    }
  });
});

describe('hostile input: idle TCP connections flooding the MPC\'s ports under ulimit -n 256', () => {
  let mpc: MpcProcess;
  let gateway: GatewayProcess;
  let late: GatewayProcess | undefined;
  const flood: net.Socket[] = [];
  const clients: TestClient[] = [];
  let publisher: Publisher;

  before(async () => {
    mpc = await startMpcProcess(undefined, ['--http', '0', '--grpc', '0'], { fileLimit: 256 });
    gateway = await startGatewayProcess(mpc.gatewayPort);
    publisher = new Publisher('127.0.0.1', mpc.publisherPort);
  });

  after(async () => {
    for (const socket of flood) socket.destroy();
    await Promise.all(clients.map((c) => c.close()));
    await publisher?.close();
    await late?.stop();
    await gateway?.stop();
    await mpc?.stop();
  });

  test('past its budget a connection is closed, counted and logged; /healthz, HTTP publishing and a gateway linking afresh are served', async () => {
    const { publisher: cap, gateway: gatewayCap, http: httpCap, grpc: grpcCap } = (await mpc.stats()).connections;
    const caps = [cap.limit, gatewayCap.limit, httpCap?.limit, grpcCap?.limit];
    assert.ok(caps.every((limit) => typeof limit === 'number' && limit > 0), `a cap for every port: ${JSON.stringify(caps)}`);
    assert.ok(caps.reduce<number>((n, limit) => n + limit!, 0) < 256, `caps together below the limit: ${JSON.stringify(caps)}`);
    // More idle connections than the MPC has descriptors for.
    for (let i = 0; i < 300; i++) {
      const socket = net.connect(mpc.publisherPort, '127.0.0.1');
      socket.on('error', () => {});
      flood.push(socket);
    }
    // At the cap the oldest idle one (still in its ZMTP handshake) makes room for each new one.
    await until('idle connections shed at the cap', async () => (await mpc.stats()).connections.publisher.shed > 0);
    await mpc.waitForLog((line) => typeof line.msg === 'string' && line.msg.startsWith('publisher port:') && line.msg.includes('to make room'));
    const during = (await mpc.stats()).connections.publisher;
    assert.ok(during.open <= during.limit!, JSON.stringify(during));
    // The admin port and the HTTP ingress still accept.
    const health = await fetch(`http://127.0.0.1:${mpc.adminPort}/healthz`, { signal: AbortSignal.timeout(5000) });
    assert.equal(health.status, 200);
    await health.body?.cancel();
    const ingress = await mpc.http('/healthz', { signal: AbortSignal.timeout(5000) });
    assert.equal(ingress.status, 200);
    await ingress.body?.cancel();
    // A gateway linking now (a deploy, a restart) gets its link and delivers; so does the one linked before.
    late = await startGatewayProcess(mpc.gatewayPort);
    for (const g of [gateway, late]) {
      const client = await TestClient.connect(g.url);
      clients.push(client);
      await client.subscribe('fd:x');
    }
    await publisher.ready({ topic: 'fd', timeoutMs: 15_000 });
    await publisher.send('fd:x', 'through');
    for (const client of clients) await client.waitFor((m) => m.includes('"through"'), 0, 15_000);
    // The flooded port itself still takes a publisher that completes its handshake (before, the idle
    // connections kept every new one out until its 30 s handshake timeout, and came back).
    await publishedThroughNewPublisher('a new publisher during the flood');
    const publisherPort = (await mpc.stats()).connections.publisher;
    assert.equal(publisherPort.refused, 0, 'nothing refused while idle connections could be shed');
    const metrics = await (await fetch(`http://127.0.0.1:${mpc.adminPort}/metrics`)).text();
    assert.ok((metricValue(metrics, 'tormq_mpc_connections_shed_total', { port: 'publisher' }) ?? 0) > 0);
    assert.equal(metricValue(metrics, 'tormq_mpc_connections_refused_total', { port: 'gateway' }), 0);
  });
  /** Opens 300 idle connections to `port` (more than the MPC has descriptors) until its cap sheds some. */
  async function floodPort(port: number, name: 'http' | 'grpc'): Promise<net.Socket[]> {
    const sockets: net.Socket[] = [];
    for (let i = 0; i < 300; i++) {
      const socket = net.connect(port, '127.0.0.1');
      socket.on('error', () => {});
      sockets.push(socket);
    }
    flood.push(...sockets);
    await until(`${name} connections shed at its cap`, async () => (await mpc.stats()).connections[name]!.shed > 0);
    await mpc.waitForLog((line) => typeof line.msg === 'string' && line.msg.startsWith(`${name} port:`) && line.msg.includes('to make room'));
    const during = (await mpc.stats()).connections[name]!;
    assert.ok(during.open <= during.limit!, JSON.stringify(during));
    return sockets;
  }

  /** A publisher connecting now gets its message to the clients of both gateways. */
  async function publishedThroughNewPublisher(text: string): Promise<void> {
    const fresh = new Publisher('127.0.0.1', mpc.publisherPort);
    try {
      await fresh.ready({ topic: 'fd', timeoutMs: 15_000 });
      await fresh.send('fd:x', text);
      for (const client of clients) await client.waitFor((m) => m.includes(`"${text}"`), 0, 15_000);
    } finally {
      await fresh.close();
    }
  }

  test('a flood of the HTTP ingress or of the gRPC port is capped at that port\'s share: that port, the others, /healthz and publishing are served', async () => {
    for (const socket of flood.splice(0)) socket.destroy(); // the publisher port's flood, above
    assert.equal(clients.length, 2, 'runs after the publisher port\'s test, with its two clients');

    const httpFlood = await floodPort(mpc.httpPort!, 'http');
    const grpc = await PythonGrpcClient.start(mpc.grpcPort!); // connects now, during the flood
    try {
      const reply = await grpc.call('System');
      assert.ok('reply' in reply, `gRPC System during the HTTP flood: ${JSON.stringify(reply)}`);
    } finally {
      grpc.close();
    }
    const health = await fetch(`http://127.0.0.1:${mpc.adminPort}/healthz`, { signal: AbortSignal.timeout(5000) });
    assert.equal(health.status, 200);
    await health.body?.cancel();
    await publishedThroughNewPublisher('during the HTTP flood');
    // The flooded port itself answers a new request: an idle connection makes room for it.
    const flooded = await mpc.http('/healthz', { signal: AbortSignal.timeout(5000) });
    assert.equal(flooded.status, 200);
    await flooded.body?.cancel();
    for (const socket of httpFlood) socket.destroy();
    await until('the HTTP flood closed', async () => (await mpc.stats()).connections.http!.open === 0);

    await floodPort(mpc.grpcPort!, 'grpc');
    const ingress = await mpc.http('/healthz', { signal: AbortSignal.timeout(5000) });
    assert.equal(ingress.status, 200);
    await ingress.body?.cancel();
    await publishedThroughNewPublisher('during the gRPC flood');
    const grpcDuring = await PythonGrpcClient.start(mpc.grpcPort!); // the flooded port, a new connection
    try {
      const reply = await grpcDuring.call('System');
      assert.ok('reply' in reply, `gRPC System during the gRPC flood: ${JSON.stringify(reply)}`);
    } finally {
      grpcDuring.close();
    }

    const metrics = await (await fetch(`http://127.0.0.1:${mpc.adminPort}/metrics`)).text();
    for (const port of ['http', 'grpc']) assert.ok((metricValue(metrics, 'tormq_mpc_connections_shed_total', { port }) ?? 0) > 0, port);
    assert.equal(metricValue(metrics, 'tormq_mpc_connections_refused_total', { port: 'gateway' }), 0);
  });

  test('requests started and never finished (a body a byte at a time, a gRPC call without its message) are still handshakes: shed at the cap, the port serves', async () => {
    for (const socket of flood.splice(0)) socket.destroy();
    await until('the earlier floods closed', async () => {
      const { http, grpc } = (await mpc.stats()).connections;
      return http!.open === 0 && grpc!.open === 0;
    });
    // Before, a connection counted as established from its request's headers (HTTP) or its first
    // HEADERS frame (gRPC): the port's cap of these (21 here) refused every new client, for 300 s
    // (Node's request timeout) over HTTP and for good over gRPC.
    const { httpPort, grpcPort } = mpc;
    for (let i = 0; i < 300; i++) {
      const socket = net.connect(httpPort!, '127.0.0.1');
      socket.on('error', () => {});
      socket.resume();
      socket.write('POST /publish HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n[');
      flood.push(socket);
    }
    await until('slow bodies shed at the cap', async () => (await mpc.stats()).connections.http!.shed >= 250);
    const flooded = await mpc.http('/healthz', { signal: AbortSignal.timeout(5000) });
    assert.equal(flooded.status, 200);
    await flooded.body?.cancel();
    assert.equal((await mpc.stats()).connections.http!.refused, 0);

    const sessions: http2.ClientHttp2Session[] = [];
    try {
      for (let i = 0; i < 300; i++) {
        const session = http2.connect(`http://127.0.0.1:${grpcPort}`);
        session.on('error', () => {});
        const call = session.request({ ':method': 'POST', ':path': '/proto.Rpc/Push', 'content-type': 'application/grpc', te: 'trailers' });
        call.on('error', () => {});
        call.write(Buffer.from([0, 0, 0, 0, 100])); // a 100-byte message announced, never sent
        sessions.push(session);
      }
      await until('unfinished calls shed at the cap', async () => (await mpc.stats()).connections.grpc!.shed >= 250);
      const grpc = await PythonGrpcClient.start(grpcPort!);
      try {
        const reply = await grpc.call('System');
        assert.ok('reply' in reply, `gRPC System during the flood of unfinished calls: ${JSON.stringify(reply)}`);
      } finally {
        grpc.close();
      }
      assert.equal((await mpc.stats()).connections.grpc!.refused, 0);
    } finally {
      for (const session of sessions) session.destroy();
    }
  });

  test('keep-alive connections answered once and then trickling their next request are handshakes again: shed at the cap, the port serves', async () => {
    for (const socket of flood.splice(0)) socket.destroy();
    await until('the earlier floods closed', async () => (await mpc.stats()).connections.http!.open === 0);
    const { shed: shedBefore, refused: refusedBefore } = (await mpc.stats()).connections.http!;
    // Before, a connection whose first request had been answered was established for good: 21 of these
    // (the cap here) each trickling a second request held the port for Node's request timeout, and
    // could start over with one quick request.
    // Ten at a time, each batch's first requests answered before the next batch connects (at once, the
    // 300 would shed one another before their first answers).
    let answered = 0;
    for (let batch = 0; batch < 30; batch++) {
      await Promise.all(Array.from({ length: 10 }, () => new Promise<void>((resolve) => {
        const socket = net.connect(mpc.httpPort!, '127.0.0.1');
        socket.on('error', () => {});
        socket.once('close', () => resolve());
        socket.write('GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n');
        socket.once('data', () => {
          answered++;
          socket.write('POST /publish HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n[');
          socket.resume();
          resolve();
        });
        flood.push(socket);
      })));
    }
    await until('trickling keep-alive connections shed at the cap', async () => (await mpc.stats()).connections.http!.shed >= shedBefore + 250);
    const flooded = await mpc.http('/healthz', { signal: AbortSignal.timeout(5000) });
    assert.equal(flooded.status, 200);
    await flooded.body?.cancel();
    assert.equal((await mpc.stats()).connections.http!.refused, refusedBefore, 'none refused');
    assert.ok(answered >= 250, `${answered} first requests answered`);
  });

  test(`a flood of the MPC's admin port is capped at ${ADMIN_MAX_CONNECTIONS}: it answers, and a new publisher is served`, async () => {
    for (const socket of flood.splice(0)) socket.destroy();
    for (let i = 0; i < 300; i++) {
      const socket = net.connect(mpc.adminPort, '127.0.0.1');
      socket.on('error', () => {});
      flood.push(socket);
    }
    await until('admin connections shed at the cap', async () => (await mpc.stats()).connections.admin!.shed >= 300 - ADMIN_MAX_CONNECTIONS);
    const during = (await mpc.stats()).connections.admin!;
    assert.ok(during.open <= ADMIN_MAX_CONNECTIONS && during.limit === ADMIN_MAX_CONNECTIONS, JSON.stringify(during));
    assert.equal(during.refused, 0);
    await mpc.waitForLog((line) => typeof line.msg === 'string' && line.msg.startsWith('admin port:') && line.msg.includes('to make room'));
    await publishedThroughNewPublisher('during the admin flood');
    const metrics = await (await fetch(`http://127.0.0.1:${mpc.adminPort}/metrics`)).text();
    assert.ok((metricValue(metrics, 'tormq_mpc_connections_shed_total', { port: 'admin' }) ?? 0) >= 300 - ADMIN_MAX_CONNECTIONS);
  });
});

describe('hostile input: gRPC connections left open after a call', () => {
  test('a connection with no call open for --grpc-idle-ms is closed (GOAWAY), and its slot freed', async () => {
    // grpc-js closes no connection by default: one that made a call kept its slot of the port's cap
    // (and its descriptor) until the client went away.
    const mpc = await startMpcProcess(undefined, ['--grpc', '0', '--grpc-idle-ms', '700']);
    const session = http2.connect(`http://127.0.0.1:${mpc.grpcPort}`);
    try {
      session.on('error', () => {});
      const goaway = new Promise<void>((resolve) => session.once('goaway', () => resolve()));
      const status = await new Promise<string | undefined>((resolve, reject) => {
        const call = session.request({ ':method': 'POST', ':path': '/proto.Rpc/System', 'content-type': 'application/grpc', te: 'trailers' });
        call.on('trailers', (headers) => resolve(headers['grpc-status'] as string | undefined));
        call.on('error', reject);
        call.resume();
        call.end(Buffer.alloc(5)); // an empty message
      });
      assert.equal(status, '0');
      assert.equal((await mpc.stats()).connections.grpc!.open, 1);
      await goaway;
      await until('the idle connection closed', async () => (await mpc.stats()).connections.grpc!.open === 0);
    } finally {
      session.destroy();
      await mpc.stop();
    }
  });
});
