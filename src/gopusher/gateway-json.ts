/**
 * gopusher's HTTP API was grpc-gateway v1 in front of its gRPC service; tormq answers its routes as
 * that gateway's default marshaler did (runtime.JSONPb with OrigName): the proto's own field names,
 * 64-bit integers as JSON strings, fields holding their zero value left out. So a push answers
 * `{"message":"ok"}` (the zero `code` omitted), Group `{"clientNum":"3"}`. Errors are grpc-gateway v1's
 * body, `{"error": message, "code": grpc status, "message": message}`, with its HTTP status.
 */
import { GrpcStatus, type GrpcStatusCode } from './service.js';

/** grpc-gateway's HTTPStatusFromCode, for the statuses tormq's service returns. */
export function httpStatusOf(status: GrpcStatusCode): number {
  switch (status) {
    case GrpcStatus.OK:
      return 200;
    case GrpcStatus.INVALID_ARGUMENT:
      return 400;
    case GrpcStatus.UNAUTHENTICATED:
      return 401;
    case GrpcStatus.RESOURCE_EXHAUSTED:
      return 429;
    case GrpcStatus.UNIMPLEMENTED:
      return 501;
    case GrpcStatus.UNAVAILABLE:
      return 503;
    default:
      return 500;
  }
}

export function errorBody(status: GrpcStatusCode, message: string): { error: string; code: number; message: string } {
  return { error: message, code: status, message };
}

/**
 * A reply as JSONPb marshals it without EmitDefaults: `int64` fields (named in `int64`) as strings,
 * zero values (0, "", false) left out, the proto's field order kept.
 */
export function marshalReply(reply: Record<string, string | number | boolean>, int64: readonly string[] = []): Record<string, string | number | boolean> {
  const json: Record<string, string | number | boolean> = {};
  for (const [field, value] of Object.entries(reply)) {
    if (value === 0 || value === '' || value === false) continue;
    json[field] = int64.includes(field) ? String(value) : value;
  }
  return json;
}

/** The int64 fields of each reply (proto/rpc.proto). */
export const INT64_FIELDS = {
  PushReply: [] as string[],
  SystemReply: ['cpuNum', 'goroutineNum', 'clientNum', 'groupNum'],
  IsOnlineReply: [] as string[],
  GroupReply: ['clientNum'],
} as const;
