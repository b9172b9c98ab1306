/**
 * The original MPC, for comparison: an XSUB bound for publishers proxied to an XPUB bound for
 * subscribers by zeromq's Proxy (no checks, no positions, no history). Prints one JSON ready line.
 */
import { Proxy, XPublisher, XSubscriber } from 'zeromq';

const frontEnd = new XSubscriber();
const backEnd = new XPublisher();
await frontEnd.bind('tcp://127.0.0.1:*');
await backEnd.bind('tcp://127.0.0.1:*');
const port = (endpoint: string) => Number(endpoint.slice(endpoint.lastIndexOf(':') + 1));
console.log(JSON.stringify({ msg: 'mpc ready', publisherPort: port(frontEnd.lastEndpoint!), gatewayPort: port(backEnd.lastEndpoint!) }));
const proxy = new Proxy(frontEnd, backEnd);
process.once('SIGTERM', () => proxy.terminate());
await proxy.run();
process.exit(0);
