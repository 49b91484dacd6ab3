// A small inference server that is not Python, for `provenance proxy` tests and benchmarks:
// node's own http module, nothing installed.
//
//   node predictor.js [PORT] [DELAY_MS]
//                         prints "listening on PORT" once it accepts connections (0: any);
//                         DELAY_MS: /v1/predict answers that much later (setTimeout: an
//                         inference time that does not take the CPU; benchmarks/proxy.py)
//
// POST /v1/predict        {"instances": [[numbers]]} -> {"predictions": [row sums]}
// POST /v1/embed          any bytes -> application/octet-stream, each byte inverted
// POST /v1/drifting       like /v1/predict, but every answer differs (a counter): the same
//                         request never gets the same body twice
// GET  /v1/stream         a chunked JSON answer written in several pieces
// GET  /v1/bytes?n=N      N bytes of application/octet-stream
// GET  /v1/slow?ms=N      answers {"slept": N} after N milliseconds
// GET  /v1/headers        the request's method, url and headers, as JSON
// POST /v1/fail           500 {"error": "boom"}, with a forged X-Provenance-Sequence header
// POST /v1/forge          200, with forged X-Provenance-* headers of its own
// POST /v1/login          200, with Set-Cookie: session=alice (a cookie meant for one client)
// anything else           404 {"error": "not found"}
"use strict";

const http = require("http");

let drift = 0;
const delay = Number(process.argv[3] || "0");

function send(res, status, type, body, extra) {
  res.writeHead(status, Object.assign({ "content-type": type, "content-length": body.length }, extra || {}));
  res.end(body);
}

function json(res, status, value, extra) {
  send(res, status, "application/json", Buffer.from(JSON.stringify(value)), extra);
}

function predictions(body) {
  const parsed = JSON.parse(body.toString("utf8"));
  return parsed.instances.map((row) => row.reduce((a, b) => a + b, 0));
}

const server = http.createServer((req, res) => {
  const chunks = [];
  req.on("data", (c) => chunks.push(c));
  req.on("end", () => {
    const body = Buffer.concat(chunks);
    const url = new URL(req.url, "http://upstream");
    try {
      route(req, res, url, body);
    } catch (e) {
      json(res, 400, { error: String(e.message || e) });
    }
  });
});

function route(req, res, url, body) {
  const key = `${req.method} ${url.pathname}`;
  switch (key) {
    case "POST /v1/predict": {
      const value = { predictions: predictions(body) };
      if (delay > 0) return setTimeout(() => json(res, 200, value), delay);
      return json(res, 200, value);
    }
    case "POST /v1/embed": {
      const out = Buffer.alloc(body.length);
      for (let i = 0; i < body.length; i++) out[i] = body[i] ^ 0xff;
      return send(res, 200, "application/octet-stream", out);
    }
    case "POST /v1/drifting":
      drift += 1;
      return json(res, 200, { predictions: predictions(body).map((p) => p + drift) });
    case "GET /v1/stream": {
      res.writeHead(200, { "content-type": "application/json" }); // chunked: no length
      const parts = ['{"tokens": [', '"a", ', '"b", ', '"c"', "]}"];
      let i = 0;
      const next = () => {
        if (i === parts.length) return res.end();
        res.write(parts[i++]);
        setTimeout(next, 5);
      };
      return next();
    }
    case "GET /v1/bytes": {
      const n = Number(url.searchParams.get("n") || "0");
      return send(res, 200, "application/octet-stream", Buffer.alloc(n, 0x61));
    }
    case "GET /v1/slow": {
      const ms = Number(url.searchParams.get("ms") || "0");
      return setTimeout(() => json(res, 200, { slept: ms }), ms);
    }
    case "GET /v1/headers":
      return json(res, 200, { method: req.method, url: req.url, headers: req.headers });
    case "POST /v1/fail":
      return json(res, 500, { error: "boom" }, { "x-provenance-sequence": "7" });
    case "POST /v1/forge":
      return json(res, 200, { ok: true }, {
        "x-provenance-sequence": "999999",
        "x-provenance-receipt": "http://evil.example/receipt",
      });
    case "POST /v1/login":
      return json(res, 200, { ok: true }, { "set-cookie": "session=alice; Path=/" });
    default:
      return json(res, 404, { error: "not found" });
  }
}

server.keepAliveTimeout = 60000;
server.listen(Number(process.argv[2] || "0"), "127.0.0.1", () => {
  console.log(`listening on ${server.address().port}`);
});
process.on("SIGTERM", () => server.close(() => process.exit(0)));
