// The gRPC peer of bench/compare.ts: a unary echo server on @grpc/grpc-js.
// A generic service with passthrough serializers, so the body is the payload
// bytes as they are (no protobuf work on either side: the cheapest gRPC can be).
//
//   node server.js            prints "listening on 127.0.0.1:PORT", serves until SIGTERM

import grpc from "@grpc/grpc-js";

export const ECHO = {
  echo: {
    path: "/bench.Echo/Echo",
    requestStream: false,
    responseStream: false,
    requestSerialize: (value) => value,
    requestDeserialize: (bytes) => bytes,
    responseSerialize: (value) => value,
    responseDeserialize: (bytes) => bytes,
  },
};

const server = new grpc.Server({ "grpc.max_receive_message_length": 8 * 1024 * 1024 });
server.addService(ECHO, {
  echo(call, callback) {
    callback(null, call.request);
  },
});
server.bindAsync("127.0.0.1:0", grpc.ServerCredentials.createInsecure(), (error, port) => {
  if (error) {
    console.error(`cannot bind: ${error.message}`);
    process.exit(1);
  }
  console.error(`listening on 127.0.0.1:${port}`);
});
for (const signal of ["SIGINT", "SIGTERM"]) {
  process.on(signal, () => server.tryShutdown(() => process.exit(0)));
}
