"use strict";
// A round-robin HTTP proxy on 127.0.0.1 for the cluster tests: each request
// goes to the next target, with no stickiness at all (a load balancer at its
// least helpful), so that a polling session's requests land on every gateway
// and the gateways must forward them to the session's owner. WebSocket
// upgrade requests are proxied too (to the next target as well): the bytes
// are piped both ways once the target answers.
//
//   const proxy = await startProxy(cluster.gatewayUrls);
//   io(`${proxy.url}/`, { transports: ["polling"] });
//   proxy.counts   // requests (and upgrades) sent to each target
//   await proxy.close();

const http = require("node:http");
const net = require("node:net");

async function startProxy(targetUrls) {
  const targets = targetUrls.map((u) => new URL(u));
  if (targets.length === 0) throw new Error("startProxy: no targets");
  const counts = targets.map(() => 0);
  let next = 0;
  const pick = () => {
    const i = next++ % targets.length;
    counts[i] += 1;
    return targets[i];
  };
  const sockets = new Set();
  const track = (socket) => {
    sockets.add(socket);
    socket.once("close", () => sockets.delete(socket));
    return socket;
  };

  const server = http.createServer((req, res) => {
    const target = pick();
    const upstream = http.request(
      {
        host: target.hostname,
        port: target.port,
        method: req.method,
        path: req.url,
        headers: req.headers,
        agent: false,
      },
      (answer) => {
        res.writeHead(answer.statusCode, answer.statusMessage, answer.rawHeaders);
        answer.pipe(res);
      },
    );
    upstream.on("error", (err) => {
      if (!res.headersSent) {
        res.writeHead(502, { "content-type": "text/plain" });
        res.end(`rr-proxy: ${target.host}: ${err.message}`);
      } else {
        res.destroy(err);
      }
    });
    res.on("close", () => upstream.destroy());
    req.pipe(upstream);
  });

  server.on("connection", track);
  server.on("upgrade", (req, client, head) => {
    const target = pick();
    const upstream = track(net.connect(Number(target.port), target.hostname));
    const fail = () => {
      client.destroy();
      upstream.destroy();
    };
    upstream.on("error", fail);
    client.on("error", fail);
    upstream.on("connect", () => {
      let request = `${req.method} ${req.url} HTTP/${req.httpVersion}\r\n`;
      for (let i = 0; i < req.rawHeaders.length; i += 2) {
        request += `${req.rawHeaders[i]}: ${req.rawHeaders[i + 1]}\r\n`;
      }
      upstream.write(`${request}\r\n`);
      if (head && head.length) upstream.write(head);
      upstream.pipe(client);
      client.pipe(upstream);
    });
  });

  await new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", resolve);
  });
  const { port } = server.address();
  return {
    url: `http://127.0.0.1:${port}`,
    counts,
    close: () =>
      new Promise((resolve) => {
        for (const socket of sockets) socket.destroy();
        server.close(() => resolve());
      }),
  };
}

module.exports = { startProxy };
