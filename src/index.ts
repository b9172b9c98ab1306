/** The public API of the `tormq` package. */
export { Publisher, encodeBody, type PublisherOptions, type ReadyOptions } from './sdk/publisher.js';
export { startMpc, MPC_DEFAULTS, MPC_OPTIONS, type Mpc, type MpcOptions, type MpcCurveOptions } from './mpc/mpc.js';
export { startHttpIngress, HTTP_INGRESS_DEFAULTS, HTTP_INGRESS_OPTIONS, type HttpIngress, type HttpIngressOptions } from './ingress/http-ingress.js';
export { Gateway } from './gateway/main/gateway.js';
export { GATEWAY_DEFAULTS, GATEWAY_OPTIONS, validateGatewayConfig, type GatewayConfig, type GatewayOptions } from './gateway/shared/config.js';
export { TokenVerifier, isGranted, type Grants, TORMQ_SUBPROTOCOL, BEARER_SUBPROTOCOL_PREFIX } from './gateway/worker/auth.js';
export { TormqError, ErrorCodes, type ErrorCode } from './errors.js';
export { WireErrorCodes, type WireErrorCode } from './protocol/wire-errors.js';
export { Close, CloseCodes } from './protocol/close-codes.js';
export { topicError, rootOf, topicMatches } from './protocol/topic.js';
export { identityTopic } from './protocol/identity.js';
export { generateCurveKeyPair, type CurveKeyPair, type CurveClientKeys } from './zmq/curve.js';
