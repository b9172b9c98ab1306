export { Publisher, encodeBody, type PublisherOptions, type ReadyOptions } from './sdk/publisher.js';
export { startMpc, MPC_DEFAULTS, type Mpc, type MpcOptions } from './mpc/mpc.js';
export { Gateway } from './gateway/gateway.js';
export { GATEWAY_DEFAULTS, validateGatewayConfig, type GatewayConfig, type GatewayOptions } from './gateway/config.js';
export { TormqError, ErrorCodes, type ErrorCode } from './errors.js';
export { CloseCodes } from './protocol/close-codes.js';
export { topicError, rootOf, topicMatches } from './protocol/topic.js';
export { startHttpIngress, HTTP_INGRESS_DEFAULTS, type HttpIngress, type HttpIngressOptions } from './mpc/http-ingress.js';
export { identityTopic } from './protocol/identity.js';
