// Service D, "which products did user U order?", in plain JavaScript: Node 20, no packages.
//
// A reference program for msshop's foreign-service contract (docs/protocol.md): msshop runs
// it as the sandbox's query service, and it answers the lesson's question two ways:
//
//     GET /user-orders/{user_id}?strategy=direct-call
//         ask the owners now: users and orders at once, then products for the titles
//     GET /user-orders/{user_id}?strategy=replicated[&after=POSITION&wait_ms=2000]
//         read our own copy, built from the bus's events (after=: read-your-writes)
//     GET /health
//         who we are, and how far our copy has read the bus
//     POST /chaos/trespass
//         the sandbox's owner asks us to open another service's file, as a bug would
//
// It never opens another service's file (unless told to, on purpose: POST /chaos/trespass):
// what it knows of users, products and orders comes over HTTP (direct-call) or from their
// events on the bus (replicated): msshop's log, or NATS JetStream read with node:net and
// no package. Node 20 has no
// SQLite, so the read model lives in memory and in ONE file, $MSSHOP_DATA_DIR/
// query-replica.json, rewritten (write, fsync, rename) after each page of events: the rows
// and the bus position in the same file, so a crash leaves both or neither.
//
// Run it as msshop's query service:  msshop up --service query='node service.js'
"use strict";

const crypto = require("node:crypto");
const fs = require("node:fs");
const http = require("node:http");
const net = require("node:net");
const path = require("node:path");

const MAX_ID = Number.MAX_SAFE_INTEGER; // ids and positions beyond this lose digits in JS
const MAX_WAIT_MS = 30_000; // read-your-writes: the longest a caller may ask us to wait
const MAX_IDS = 10_000; // ids in one ?ids= call to products (what it takes at most)
const PAGE = 1000; // events asked of the bus at a time
const LONG_POLL_MS = 10_000; // how long the bus may hold a read while nothing is new
const HTTP_TIMEOUT_MS = 2000; // how long a peer has to answer a direct-call
const MODEL_FILE = "query-replica.json"; // the read model, in $MSSHOP_DATA_DIR
const KEPT_DEAD_LETTERS = 1000; // the newest dead letters kept in the file (all are counted)
const KEPT_SPANS = 10_000; // the last spans made, for GET /spans; older ones are let go

function log(level, message) {
  process.stderr.write(`${new Date().toISOString()} ${level} service-d: ${message}\n`);
}

// --- Settings: everything comes from the environment and service.json -------------------

// What msshop tells us (docs/protocol.md): the address to bind, our own directory, the
// other services' URLs, and the secret that lets us read the bus. Secrets live only in
// that file (mode 0600), never in the environment or on a command line.
function loadSettings() {
  const file = process.env.MSSHOP_SERVICE_FILE;
  if (!file) {
    fail("MSSHOP_SERVICE_FILE is not set: run this program as a service of msshop " +
         "(msshop up --service query='node service.js')");
  }
  let doc;
  try {
    doc = JSON.parse(fs.readFileSync(file, "utf8"));
  } catch (err) {
    fail(`cannot read the service file ${file}: ${err.message}`);
  }
  const bus = doc.bus || {}; // {"backend": "log", "url"} or {"backend": "nats", "servers", ...}
  if (!["log", "nats"].includes(bus.backend || "log")) {
    fail(`${doc.service}: this example reads msshop's log bus or NATS JetStream, not ` +
         `${JSON.stringify(bus.backend)}`);
  }
  for (const key of ["service", "host", "port", "data_dir", "peers", "credential",
                     "owner_digest"]) {
    if (doc[key] === undefined) fail(`cannot read the service file ${file}: no "${key}"`);
  }
  return { service: doc.service, host: doc.host, port: Number(doc.port),
           dataDir: doc.data_dir, peers: doc.peers, credential: doc.credential,
           ownerDigest: doc.owner_digest, bus, busUrl: bus.url || doc.peers.bus };
}

function fail(message) {
  process.stderr.write(message + "\n");
  process.exit(2);
}

// --- Errors: every failure is one JSON answer, as msshop's services give ------------------

// An answer other than 200: {"error", "status", "service"} plus any `extra` keys
// (e.g. "dependency": which service failed).
class HttpError extends Error {
  constructor(status, message, extra = {}) {
    super(message);
    this.status = status;
    this.extra = extra;
  }
}

// --- Tracing: forward W3C traceparent so msshop's traces show who touched which data -----
//
// Each request gets a server span; each call we make gets a client span, whose id goes to
// the callee in `traceparent`, so the callee's spans hang under it. msshop draws a trace by
// asking every service for its spans of that trace (GET /spans): ours are kept here, in
// msshop's span format.

const TRACEPARENT = /^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$/;
const newId = (bits) => crypto.randomBytes(bits / 8).toString("hex");

// [trace id, the caller's span id] from the caller's header; a new trace if it sent none,
// or one we cannot read.
function parseTraceparent(header) {
  const found = TRACEPARENT.exec(String(header || "").trim().toLowerCase());
  if (found && found[1] !== "0".repeat(32) && found[2] !== "0".repeat(16)) {
    return [found[1], found[2]];
  }
  return [newId(128), null];
}

class Tracer {
  constructor(service) {
    this.service = service;
    this.kept = [];
  }

  start(traceId, parentId, name, kind, attributes = {}) {
    return { trace_id: traceId, span_id: newId(64), parent_id: parentId,
             service: this.service, name, kind, start: Date.now() / 1000, duration_ms: 0,
             status: "ok", attributes, began: process.hrtime.bigint() };
  }

  end(span, error = false) {
    span.duration_ms = Number(process.hrtime.bigint() - span.began) / 1e6;
    delete span.began;
    if (error) span.status = "error";
    this.kept.push(span);
    if (this.kept.length > KEPT_SPANS) this.kept.splice(0, this.kept.length - KEPT_SPANS);
  }

  // A span around an async block: timed, marked "error" if the block throws.
  async around(traceId, parentId, name, kind, attributes, block) {
    const span = this.start(traceId, parentId, name, kind, attributes);
    try {
      const result = await block(span);
      this.end(span);
      return result;
    } catch (err) {
      this.end(span, true);
      throw err;
    }
  }

  of(traceId) {
    return this.kept.filter((span) => span.trace_id === traceId);
  }
}

// --- Calling the other services over HTTP ----------------------------------------------

// One kept-alive connection pool for every call: a new TCP connection per call costs more
// than the call itself on a small answer.
const AGENT = new http.Agent({ keepAlive: true, maxSockets: 64 });

// GET url+path; resolves {status, data}. Rejects with an Error whose `code` says why
// (ECONNREFUSED, ETIMEDOUT, ...) if nobody answers.
function call(url, pathAndQuery, headers, timeoutMs, agent = AGENT, signal = undefined) {
  return new Promise((resolve, reject) => {
    const req = http.get(new URL(pathAndQuery, url), { agent, headers, signal }, (res) => {
      const chunks = [];
      res.on("data", (chunk) => chunks.push(chunk));
      res.on("error", reject);
      res.on("end", () => {
        const body = Buffer.concat(chunks).toString("utf8");
        let data = null;
        try {
          data = body ? JSON.parse(body) : null;
        } catch {
          data = { error: body.slice(0, 200) };
        }
        resolve({ status: res.statusCode, data });
      });
    });
    // without it each kept-alive request waits for the peer's delayed ACK (~40 ms)
    req.on("socket", (socket) => socket.setNoDelay(true));
    req.setTimeout(timeoutMs, () => {
      const err = new Error(`no answer within ${timeoutMs} ms`);
      err.code = "ETIMEDOUT";
      req.destroy(err);
    });
    req.on("error", (err) => {
      err.reused = req.reusedSocket; // a kept-alive socket the peer had already closed
      reject(err);
    });
  });
}

// A peer closes an idle kept-alive connection when it likes; a request sent on it just
// then fails without the peer being down. Such a request is tried once more, on a new one.
async function callOnce(url, pathAndQuery, headers, timeoutMs) {
  try {
    return await call(url, pathAndQuery, headers, timeoutMs);
  } catch (err) {
    if (err.reused && err.code === "ECONNRESET") {
      return call(url, pathAndQuery, headers, timeoutMs);
    }
    throw err;
  }
}

const peerDetail = (data) => (data && typeof data === "object" ? data.error : data);

// Call a peer by name, as a client span whose id the callee gets in `traceparent`.
// Down, slow or failing (5xx) is a 503 naming it: the caller sees which dependency to
// start again. A 4xx comes back for the caller to judge.
function ask(settings, traced, service, pathAndQuery) {
  const attributes = { "peer.service": service, "http.request.method": "GET",
                       "url.path": pathAndQuery.split("?")[0] };
  return traced.around(`GET ${service}`, "client", attributes, async (span) => {
    const url = settings.peers[service];
    const headers = { traceparent: `00-${span.trace_id}-${span.span_id}-01` };
    let answer;
    try {
      answer = await callOnce(url, pathAndQuery, headers, HTTP_TIMEOUT_MS);
    } catch (err) {
      if (err.code === "ETIMEDOUT") {
        attributes["msshop.failure"] = "timeout";
        throw new HttpError(503, `${service} did not answer within ${HTTP_TIMEOUT_MS / 1000} s`,
                            { dependency: service, failure: "timeout" });
      }
      attributes["msshop.failure"] = "refused";
      throw new HttpError(503, `${service} is down: ${err.message} at ${url}; start it ` +
                          `with: msshop start ${service}`,
                          { dependency: service, failure: "refused" });
    }
    attributes["http.response.status_code"] = answer.status;
    if (answer.status >= 500) {
      attributes["msshop.failure"] = "5xx";
      throw new HttpError(503, `${service} failed with HTTP ${answer.status}: ` +
                          peerDetail(answer.data), { dependency: service, failure: "5xx" });
    }
    return answer;
  });
}

function ok(service, { status, data }) {
  if (status !== 200) {
    throw new HttpError(502, `${service} answered HTTP ${status}: ${peerDetail(data)}`,
                        { dependency: service, failure: "4xx" });
  }
  return data;
}

// One order as every strategy shows it: prices kept as cents, sent as decimals (the same
// arithmetic as msshop's, so answers compare equal to the last digit), and where it
// stands: pending, confirmed or rejected (with the reason).
function orderLine(orderId, productId, title, quantity, unitPriceCents, status, reason) {
  return { order_id: orderId, product_id: productId, title, quantity,
           unit_price: unitPriceCents / 100, total: (quantity * unitPriceCents) / 100,
           status, reason };
}

// --- Strategy 1: direct-call (API composition) --------------------------------------------

// [user, orders] asked of their owners now. Two network stages whatever the number of
// orders: users and orders at the same time, then products for the titles.
async function directCall(settings, traced, userId, fanout) {
  const [userAnswer, ordersAnswer] = await Promise.all([
    ask(settings, traced, "users", `/users/${userId}`),
    ask(settings, traced, "orders", `/orders?user_id=${userId}`)]);
  if (userAnswer.status === 404) throw new HttpError(404, `no user with id ${userId}`);
  const user = ok("users", userAnswer);
  const orders = ok("orders", ordersAnswer).orders;
  const productIds = [...new Set(orders.map((o) => o.product_id))];
  const titles = fanout === "batched"
    ? await productTitles(settings, traced, productIds)
    : await productTitlesOneByOne(settings, traced, productIds);
  const lines = orders.map((o) => orderLine(o.id, o.product_id, titles.get(o.product_id) ?? null,
                                            o.quantity, Math.round(o.unit_price * 100),
                                            o.status ?? "confirmed", o.reason ?? null));
  return [{ id: userId, name: user.name, email: user.email }, lines];
}

// One products call for all of them (in chunks of what products takes at most).
async function productTitles(settings, traced, ids) {
  const titles = new Map();
  for (let start = 0; start < ids.length; start += MAX_IDS) {
    const chunk = ids.slice(start, start + MAX_IDS).join(",");
    const found = ok("products", await ask(settings, traced, "products",
                                           `/products?ids=${chunk}`));
    for (const product of found.products) titles.set(product.id, product.title);
  }
  return titles;
}

// fanout=naive: one call per product, one after the other: the N+1 pattern, slow on
// purpose so `msshop compare` can show what it costs.
async function productTitlesOneByOne(settings, traced, ids) {
  const titles = new Map();
  for (const productId of ids) {
    const answer = await ask(settings, traced, "products", `/products/${productId}`);
    if (answer.status !== 404) titles.set(productId, ok("products", answer).title);
  }
  return titles;
}

// --- Strategy 2: replicated (our own read model, built from the bus) ----------------------

// Each event type comes from one service only; anything else is refused (dead-lettered).
const OWNERS = { UserSignedUp: "users", ProductCreated: "products",
                 ProductUpdated: "products", OrderPlaced: "orders",
                 OrderConfirmed: "orders", OrderRejected: "orders",
                 // a saga's steps and commands: the order's outcome says all we show, so
                 // we skip them
                 StockTaken: "products", StockRefused: "products", CreditTaken: "users",
                 CreditRefused: "users", StockGivenBack: "products", TakeStock: "orders",
                 TakeCredit: "orders", GiveCreditBack: "orders", GiveStockBack: "orders",
                 CreditGivenBack: "users" };
const STEPS = new Set(["StockTaken", "StockRefused", "CreditTaken", "CreditRefused",
                       "StockGivenBack", "TakeStock", "TakeCredit", "GiveCreditBack",
                       "GiveStockBack", "CreditGivenBack"]);
// what each order event may say of its order's status (an OrderPlaced that does not:
// confirmed)
const STATUSES = { OrderPlaced: ["pending", "confirmed"], OrderConfirmed: ["confirmed"],
                   OrderRejected: ["rejected"] };

// An event that can never be applied: it goes to the dead letters with this reason.
class Poison extends Error {}

const show = (value) => JSON.stringify(value) ?? String(value);

function anId(data, key) {
  const value = data[key];
  if (!Number.isInteger(value) || value < 0 || value > MAX_ID) {
    throw new Poison(`data.${key} is not an id: ${show(value)}`);
  }
  return value;
}

function text(data, key) {
  if (typeof data[key] !== "string") {
    throw new Poison(`data.${key} is not a string: ${show(data[key])}`);
  }
  return data[key];
}

function cents(data, key) {
  const value = data[key];
  if (typeof value !== "number" || !(value >= 0 && value <= 1_000_000)) {
    throw new Poison(`data.${key} is not a price: ${show(value)}`);
  }
  return Math.round(value * 100);
}

// The read model: plain objects keyed by id, as they are stored in the file, plus an index
// of each user's orders (rebuilt on load, never stored: one fact in one place).
class ReadModel {
  constructor(stored = {}) {
    this.log = stored.log || ""; // the identity of the bus's log the position belongs to
    this.position = stored.position || 0; // the last event applied
    this.users = stored.users || {}; // id -> {name, email, version}
    this.products = stored.products || {}; // id -> {title, version}
    // id -> {user_id, product_id, quantity, cents, status, reason, version} (a file made
    // before statuses has none: its orders were all confirmed, version 1)
    this.orders = stored.orders || {};
    this.deadLetters = stored.dead_letters || []; // the newest KEPT_DEAD_LETTERS
    this.deadCount = stored.dead_count || 0;
    this.ordersByUser = new Map();
    for (const [id, order] of Object.entries(this.orders)) this.index(Number(id), order);
  }

  index(orderId, order) {
    if (!this.ordersByUser.has(order.user_id)) this.ordersByUser.set(order.user_id, []);
    this.ordersByUser.get(order.user_id).push(orderId);
  }

  // Apply one event. Every check comes before the first change, so an event that is
  // refused changes nothing. Safe to repeat and to receive out of order: users, products
  // and orders keep their aggregate version and only a newer one wins (a saga's
  // OrderConfirmed or OrderRejected, version 2, may come before its OrderPlaced).
  apply(event) {
    if (event === null || typeof event !== "object" || Array.isArray(event)) {
      throw new Poison("not an event object");
    }
    const { type: kind, source, data, aggregate_version: version } = event;
    if (!Object.hasOwn(OWNERS, kind)) throw new Poison(`unknown event type ${show(kind)}`);
    if (source !== OWNERS[kind]) {
      throw new Poison(`a ${kind} comes only from ${OWNERS[kind]}, but ${source} sent it`);
    }
    if (STEPS.has(kind)) return;
    if (data === null || typeof data !== "object" || !Number.isInteger(version) ||
        version < 0 || version > MAX_ID) {
      throw new Poison("the event has no data object or no aggregate_version");
    }
    const id = anId(data, "id");
    if (id !== event.aggregate_id) {
      throw new Poison(`data.id ${id} is not the aggregate_id ${show(event.aggregate_id)}`);
    }
    if (kind === "UserSignedUp") {
      const row = { name: text(data, "name"), email: text(data, "email"), version };
      if (!this.users[id] || version > this.users[id].version) this.users[id] = row;
    } else if (kind === "ProductCreated" || kind === "ProductUpdated") {
      // every product event carries the whole product, so an update that arrives before
      // its creation is fine: the late creation has a lower version and loses
      const row = { title: text(data, "title"), version };
      if (!this.products[id] || version > this.products[id].version) this.products[id] = row;
    } else {
      const status = data.status ?? "confirmed";
      const reason = data.reason ?? null;
      if (!STATUSES[kind].includes(status) || (reason !== null && typeof reason !== "string")) {
        throw new Poison(`${kind} says its order is ${show(status)} (reason ${show(reason)})`);
      }
      const row = { user_id: anId(data, "user_id"), product_id: anId(data, "product_id"),
                    quantity: anId(data, "quantity"), cents: cents(data, "unit_price"),
                    status, reason, version };
      const had = this.orders[id];
      if (!had) {
        this.orders[id] = row;
        this.index(id, row);
      } else if (version > (had.version ?? 1)) {
        this.orders[id] = { ...row, user_id: had.user_id }; // indexed under its first buyer
      }
    }
  }

  deadLetter(position, event, reason) {
    log("WARNING", `dead-lettered position ${position}: ${reason}`);
    const known = event !== null && typeof event === "object" ? event : {};
    this.deadLetters.push({
      position, event_id: typeof known.id === "string" ? known.id : null,
      type: typeof known.type === "string" ? known.type : null, reason,
      dead_at: Date.now() / 1000, body: (JSON.stringify(event) ?? "").slice(0, 500) });
    if (this.deadLetters.length > KEPT_DEAD_LETTERS) this.deadLetters.shift();
    this.deadCount += 1;
  }

  // The user and their orders by id, each with its product's title (null: that product's
  // event has not reached us yet). Titles are joined when asked, so a rename is one row.
  userOrders(userId) {
    const user = this.users[userId];
    if (!user) return [null, []];
    const ids = [...(this.ordersByUser.get(userId) || [])].sort((a, b) => a - b);
    const lines = ids.map((id) => {
      const o = this.orders[id];
      return orderLine(id, o.product_id, this.products[o.product_id]?.title ?? null,
                       o.quantity, o.cents, o.status ?? "confirmed", o.reason ?? null);
    });
    return [{ id: userId, name: user.name, email: user.email }, lines];
  }

  rows() {
    return { users: Object.keys(this.users).length, products: Object.keys(this.products).length,
             orders: Object.keys(this.orders).length };
  }

  toJSON() {
    return { log: this.log, position: this.position, users: this.users,
             products: this.products, orders: this.orders, dead_letters: this.deadLetters,
             dead_count: this.deadCount };
  }
}

// The file: the rows AND the position, written whole to a temporary file, flushed to
// disk, then renamed over the old one. A rename is atomic: after a crash the file is
// either the old page's or the new page's, never half of one, so we resume from a
// position that matches the rows and apply each event once.
class ModelFile {
  constructor(dataDir) {
    this.path = path.join(dataDir, MODEL_FILE);
  }

  // The stored read model, or an empty one at position 0 on a first start. A file we
  // cannot read (someone edited it) stops the program with one line: guessing would apply
  // events twice or skip them.
  load() {
    try {
      return new ReadModel(JSON.parse(fs.readFileSync(this.path, "utf8")));
    } catch (err) {
      if (err.code === "ENOENT") return new ReadModel();
      return fail(`cannot read the read model ${this.path}: ${err.message}; stop this ` +
                  "service, delete that file and start it again to rebuild it from the bus");
    }
  }

  save(model) {
    const temporary = `${this.path}.tmp`;
    const fd = fs.openSync(temporary, "w", 0o600);
    try {
      fs.writeSync(fd, JSON.stringify(model));
      fs.fsyncSync(fd); // on disk before the rename makes it the file
    } finally {
      fs.closeSync(fd);
    }
    fs.renameSync(temporary, this.path);
  }
}

class BusRefused extends Error {} // the bus answered, but not with a page (e.g. 403)

// msshop's own log bus: one HTTP long-poll per read (docs/protocol.md).
class LogReader {
  constructor(settings) {
    this.settings = settings;
    this.aborter = new AbortController(); // ends an open long-poll when we stop
    // the long-poll has its own connection: it is held open for seconds at a time
    this.agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  }

  async read(after, waitMs) {
    const query = `/events?after=${after}&limit=${PAGE}&wait_ms=${waitMs}`;
    const { status, data } = await call(
      this.settings.busUrl, query, { authorization: `Bearer ${this.settings.credential}` },
      waitMs + 5000, this.agent, this.aborter.signal);
    if (status !== 200) throw new BusRefused(`the bus answered HTTP ${status}: ${peerDetail(data)}`);
    if (!data || !Array.isArray(data.events) || !Number.isInteger(data.head)) {
      throw new BusRefused("the bus answered something that is not a page of events");
    }
    return data;
  }

  close() {
    this.aborter.abort();
  }
}

// Follows the bus from our stored position and applies what it reads. Requests read its
// progress (freshness) and wait on it (after=).
class Consumer {
  constructor(settings) {
    this.settings = settings;
    this.file = new ModelFile(settings.dataDir);
    this.model = this.file.load();
    this.applied = 0;
    this.head = this.model.position;
    this.catchingUpTo = null;
    this.listening = false;
    this.busError = null;
    this.logProblem = null;
    this.headSeenAt = null;
    this.lastAppliedAt = null;
    this.started = false; // the first page is read: we know where the bus's head was
    this.failing = null; // why the consumer fails now (not the bus's fault)
    this.waiters = new Set(); // read-your-writes requests: {position, wake}
    this.stopping = false;
    this.bus = settings.bus.backend === "nats" ? new NatsReader(settings.bus)
      : new LogReader(settings);
  }

  get position() {
    return this.model.position;
  }

  // Never ends until we stop. A failure that is not the bus's (a full disk, a bug) is
  // logged, shown in /health, and tried again from the file: what failed was not saved,
  // so it is read again from the stored position.
  async run() {
    while (!this.stopping) {
      try {
        await this.follow();
      } catch (err) {
        if (this.stopping) return;
        const why = `${err.name}: ${err.message}`;
        if (this.failing !== why) log("ERROR", `the consumer failed; trying again in 1 s: ${why}`);
        this.failing = why;
        this.listening = false;
        this.model = this.file.load(); // drop what was applied in memory but not saved
        await this.pause(1000);
      }
    }
  }

  async follow() {
    let waitMs = 0; // the first read answers at once: it tells us the bus's head
    while (!this.stopping) {
      let page;
      try {
        this.listening = waitMs > 0;
        page = await this.readBus(waitMs);
      } catch (err) {
        if (this.stopping) return;
        const why = err instanceof BusRefused ? err.message
          : `the bus is unreachable: ${err.message || err.code}`;
        await this.noteBusDown(why);
        waitMs = 0;
        continue;
      }
      if (this.busError !== null) log("INFO", `the bus is back; reading from position ${this.position}`);
      this.busError = null;
      waitMs = LONG_POLL_MS;
      this.headSeenAt = Date.now();
      if (!this.sameLog(page)) {
        await this.pause(2000); // nothing to apply until someone fixes the log
        continue;
      }
      this.head = Math.max(page.head, this.position);
      if (this.catchingUpTo === null && !this.started && page.head > this.position) {
        this.catchingUpTo = page.head;
        log("INFO", `catching up from position ${this.position} to ${page.head}`);
      }
      this.started = true;
      if (page.events.length > 0) this.applyPage(page.events);
      this.failing = null; // read and applied: whatever failed works again
    }
  }

  // The events after our position (or none, after waitMs), whichever the bus:
  // {head, log, events: [{position, event[, sender]}, ...]}.
  readBus(waitMs) {
    return this.bus.read(this.position, waitMs);
  }

  async noteBusDown(why) {
    this.listening = false;
    if (this.busError === null) {
      log("WARNING", `cannot read the bus (${why}); answers come from position ${this.position}`);
    }
    this.busError = why;
    await this.pause(500); // try again soon, but do not spin
  }

  // A position means something only in the log it was read from: if the bus's log was
  // replaced or emptied, say so and apply nothing (the fix: rebuild from 0).
  sameLog(page) {
    let problem = null;
    if (this.model.log && page.log !== this.model.log) {
      problem = `the bus's log was replaced (it is log ${String(page.log).slice(0, 8)}; this ` +
        `read model was built from log ${this.model.log.slice(0, 8)}); stop this service, ` +
        `delete ${this.file.path} and start it again to rebuild it from the new log`;
    } else if (page.head < this.position) {
      problem = `the bus's log ends at position ${page.head}, but this read model has ` +
        `applied up to ${this.position}: the log was emptied or replaced`;
    }
    if (problem && problem !== this.logProblem) log("ERROR", problem);
    this.logProblem = problem;
    if (problem === null) this.model.log = page.log;
    return problem === null;
  }

  // Apply a page of events, then save the rows and the new position in one file. Nothing
  // else runs meanwhile (it is all synchronous), so no request sees half a page; if the
  // save fails, run() reloads the file and the page is read again.
  applyPage(delivered) {
    let applied = 0;
    for (const item of delivered) {
      try {
        const source = item.event && typeof item.event === "object" ? item.event.source : null;
        if (item.sender && source !== item.sender) { // NATS: its subject says who sent it
          throw new Poison(`its source is ${show(source)}, but ${item.sender} sent it`);
        }
        this.model.apply(item.event);
        applied += 1;
      } catch (err) {
        if (!(err instanceof Poison)) throw err; // a bug is not the event's fault
        this.model.deadLetter(item.position, item.event, err.message);
      }
      this.model.position = item.position;
    }
    this.file.save(this.model);
    this.advancedTo(applied);
  }

  advancedTo(applied) {
    this.lastAppliedAt = Date.now();
    this.head = Math.max(this.head, this.position);
    this.applied += applied;
    if (this.catchingUpTo !== null && this.position >= this.catchingUpTo) {
      log("INFO", `caught up at position ${this.position}`);
      this.catchingUpTo = null;
    }
    for (const waiter of this.waiters) if (this.position >= waiter.position) waiter.wake(true);
  }

  // Read-your-writes: resolves true once `position` is applied, false after waitMs.
  waitFor(position, waitMs) {
    if (this.position >= position) return Promise.resolve(true);
    return new Promise((resolve) => {
      const waiter = { position };
      const timer = setTimeout(() => waiter.wake(false), waitMs);
      waiter.wake = (reached) => {
        clearTimeout(timer);
        this.waiters.delete(waiter);
        resolve(reached);
      };
      this.waiters.add(waiter);
    });
  }

  pause(ms) {
    return new Promise((resolve) => setTimeout(resolve, ms));
  }

  stop() {
    this.stopping = true;
    this.bus.close();
  }

  // How current the read model is, in the shape msshop's query service answers.
  freshness() {
    const now = Date.now();
    const ago = (at) => (at === null ? null : Math.round((now - at) * 10) / 10);
    // the bus answers every long-poll within LONG_POLL_MS, even with nothing new: one
    // open much longer (a frozen bus) is not "listening", whatever the socket says
    let error = this.busError;
    let listening = this.listening;
    if (listening && this.headSeenAt !== null && now - this.headSeenAt > LONG_POLL_MS + 2000) {
      error = error || `the bus has not answered for ${Math.round((now - this.headSeenAt) / 1000)} s`;
      listening = false;
    }
    return { position: this.position, bus_head: this.head, behind: this.head - this.position,
             caught_up: this.head === this.position && error === null &&
               this.logProblem === null && this.failing === null,
             catching_up_to: this.catchingUpTo, listening,
             head_seen_ms_ago: ago(this.headSeenAt),
             last_applied_ms_ago: ago(this.lastAppliedAt), bus_error: error,
             log_problem: this.logProblem };
  }
}

// --- Reading the bus on NATS JetStream, with no client library ---------------------------
//
// With `msshop up --bus nats` the bus is a JetStream stream (service.json's bus.stream)
// holding every event of the sandbox, one message each: an event's position is its stream
// sequence. We speak the NATS text protocol over a plain socket (node:net): the server says
// INFO, we say CONNECT (user and password) and PING, it says PONG; we SUB to our inbox, and
// PUB requests to the JetStream API with a reply subject in that inbox, whose answers come
// back as MSG (or HMSG: with headers). Lines end in \r\n; a message's payload follows its
// line, its length given there.
//
// The reader is a pull consumer of our own, made to start at our stored position + 1
// (ephemeral, in memory, no acks: the server forgets it when we stop asking; our position
// lives in our file, with the rows). Each read asks for the next page (MSG.NEXT: batch,
// expires) and takes what comes: each message's reply subject, $JS.ACK.<stream>.<consumer>.
// <delivered>.<stream seq>.<consumer seq>.<time>.<pending>, tells its position and how many
// are left after it. A dropped connection or a server gone: the next read connects to the
// next server of the list (a cluster's other nodes) and starts a new consumer from our
// position.

class NoStream extends BusRefused {} // JetStream has no stream by that name (code 10059)

const NATS_TIMEOUT_MS = 5000; // how long a NATS server has to answer a request
// while a fetch waits, the server sends a heartbeat (a status 100) each second; three
// seconds of silence mean our consumer is gone (its node died while we were connected to
// another), so we make a new one rather than wait for a fetch that will never end
const HEARTBEAT_MS = 1000;
const CRLF = Buffer.from("\r\n");

// Reads the sandbox's stream; read() resolves a page in the log bus's shape.
class NatsReader {
  constructor(bus) {
    this.servers = bus.servers.map((url) => new URL(url));
    this.stream = bus.stream;
    this.user = bus.user;
    this.password = bus.password;
    this.prefix = bus.subjects.replace(/>$/, ""); // msshop.<id>.: the sender follows
    this.inbox = `_INBOX.${this.user}.${newId(64)}`; // the replies we may read
    this.server = 0; // the next server to try: the one after the last that failed
    this.socket = null;
    this.received = []; // lines and messages read off the socket, not yet taken
    this.ended = null; // why the connection ended
    this.wake = null; // resolves the wait for the next line or message
    this.sent = 0; // requests made: each gets a reply subject of its own
    this.consumer = null; // our consumer's name on the server
    this.next = 0; // the stream sequence our consumer delivers next
    this.pull = null; // the reply subject of the fetch still open
    this.pullLeft = 0; // events the open fetch may still bring
    this.head = 0;
    this.log = "";
  }

  async read(after, waitMs) {
    try {
      if (this.socket === null) await this.connect();
      if (waitMs === 0 || this.consumer === null || this.next !== after + 1) {
        if (!(await this.describe())) { // no stream: an empty log, for now
          await new Promise((resolve) => setTimeout(resolve, Math.min(waitMs, 1000)));
          return { head: 0, log: "", events: [] };
        }
        if (waitMs === 0) return { head: this.head, log: this.log, events: [] }; // the head only
        await this.startConsumer(after + 1);
      }
      const events = await this.fetch(waitMs);
      if (events.length === 0) await this.describe(); // still the stream we read? how long?
      return { head: this.head, log: this.log, events };
    } catch (err) {
      this.close(); // whatever broke, start over (on the next server)
      throw err;
    }
  }

  async connect() {
    const url = this.servers[this.server % this.servers.length];
    this.server += 1; // if this one fails, the next read tries the next
    const where = `${url.hostname}:${url.port}`;
    this.received = [];
    this.ended = null;
    let buffer = Buffer.alloc(0);
    const socket = net.connect(Number(url.port) || 4222, url.hostname);
    this.socket = socket;
    socket.setNoDelay(true);
    const current = () => this.socket === socket; // an old connection's news is not ours
    socket.on("data", (chunk) => {
      if (!current()) return;
      buffer = this.parse(Buffer.concat([buffer, chunk]));
      this.poke();
    });
    socket.on("error", (err) => {
      if (current()) this.ended = this.ended || err;
      this.poke();
    });
    socket.on("close", () => {
      if (current()) this.ended = this.ended || new Error("the NATS server closed the connection");
      this.poke();
    });
    const info = await this.take(Date.now() + NATS_TIMEOUT_MS);
    if (info === null || info.line === undefined || !info.line.startsWith("INFO ")) {
      throw new Error(`${where} is not a NATS server`);
    }
    if (JSON.parse(info.line.slice(5)).tls_required) {
      throw new BusRefused(`NATS at ${where} requires TLS, which this example does not speak`);
    }
    const hello = { user: this.user, pass: this.password, verbose: false, pedantic: false,
                    headers: true, no_responders: true, name: "service-d (node)",
                    lang: "node-net", version: "1", protocol: 1 };
    socket.write(`CONNECT ${JSON.stringify(hello)}\r\nPING\r\nSUB ${this.inbox}.> 1\r\n`);
    for (;;) {
      const got = await this.take(Date.now() + NATS_TIMEOUT_MS);
      if (got === null) throw new Error(`NATS at ${where} did not answer CONNECT`);
      if (got.line === "PONG") break;
      this.check(got.line); // e.g. -ERR 'Authorization Violation': a wrong password
    }
    log("INFO", `reading stream ${this.stream} on NATS at ${where}`);
  }

  // The stream's head (its last sequence) and identity (name and creation time: a stream
  // deleted and made again is another log). False if there is no stream: the writers make
  // it with the first event, so until then the log is empty (and after a deletion, it is:
  // our position is then beyond its head).
  async describe() {
    let info;
    try {
      info = await this.request(`$JS.API.STREAM.INFO.${this.stream}`, {});
    } catch (err) {
      if (!(err instanceof NoStream)) throw err;
      this.head = 0;
      this.log = "";
      return false;
    }
    this.head = Number(info.state.last_seq);
    this.log = `${info.config.name}@${info.created}`;
    return true;
  }

  async startConsumer(start) {
    const config = { deliver_policy: "by_start_sequence", opt_start_seq: start,
                     ack_policy: "none", mem_storage: true,
                     inactive_threshold: 60e9, // ns: gone a minute after we stop
                     description: "service-d (node)" };
    const made = await this.request(`$JS.API.CONSUMER.CREATE.${this.stream}`,
                                    { stream_name: this.stream, config });
    this.consumer = made.name;
    this.next = start;
    this.pull = null;
  }

  // The next events: at once if the stream has them, else as soon as one comes, or none
  // after waitMs. One fetch open at a time; a page ends where the stream did (pending 0),
  // at PAGE events, or with the fetch.
  async fetch(waitMs) {
    if (this.pull === null) {
      this.sent += 1;
      this.pull = `${this.inbox}.fetch.${this.sent}`;
      this.pullLeft = PAGE;
      this.publish(`$JS.API.CONSUMER.MSG.NEXT.${this.stream}.${this.consumer}`, this.pull,
                   { batch: PAGE, expires: waitMs * 1e6, idle_heartbeat: HEARTBEAT_MS * 1e6 });
    }
    const events = [];
    while (this.pull !== null && events.length < PAGE) {
      const got = await this.message(Date.now() + 3 * HEARTBEAT_MS);
      if (got === null) throw new Error("NATS went quiet in a fetch (no heartbeat): our consumer is gone");
      if (got.subject === this.pull && !got.reply) { // a status: the fetch ended, or a problem
        this.fetchEnded(got.headers);
        continue;
      }
      const ack = got.reply.split(".");
      if (ack.length < 9 || ack[1] !== "ACK") continue;
      // $JS.ACK.<stream>.<consumer>.<n>.<seq>.<n>.<time>.<pending>, or with
      // <domain>.<account> after ACK (and a token more at the end)
      const at = ack.length === 9 ? 2 : 4;
      if (ack[at + 1] !== this.consumer) continue; // an old consumer's: not ours now
      const position = Number(ack[at + 3]);
      const pending = Number(ack[at + 6]);
      this.pullLeft -= 1;
      if (this.pullLeft === 0) this.pull = null; // the whole batch came: the fetch is done
      // one handed again or out of order (the bus's door may, as the log bus may) is
      // applied as any other: the read model keeps each row's version
      this.next = Math.max(this.next, position + 1);
      this.head = Math.max(this.head, position + pending);
      const sender = got.subject.slice(this.prefix.length).split(".")[0];
      let event;
      try {
        event = JSON.parse(got.payload.toString("utf8"));
      } catch {
        event = got.payload.toString("utf8"); // not JSON: dead-lettered as not an event
      }
      events.push({ position, event, sender });
      if (pending === 0) break; // all the stream holds: answer now, the fetch stays open
    }
    return events;
  }

  // A status in place of a message: 408 (expired), 409 (e.g. the consumer was deleted, or
  // the server is busy) end the fetch; 100 (a heartbeat) does not.
  fetchEnded(headers) {
    const statusLine = headers.toString("utf8").split("\r\n")[0]; // NATS/1.0 408 ...
    const code = statusLine.slice(9, 12);
    if (code === "100") return;
    this.pull = null;
    if (code === "408") return;
    this.consumer = null; // whatever it is, the next read makes a new consumer
    if (code !== "409") throw new BusRefused(`NATS refused the fetch: ${statusLine.slice(9)}`);
  }

  // A JetStream API call: its JSON answer; BusRefused with the server's words if it
  // answered an error. Made only while no fetch is open (their messages would be lost).
  async request(subject, body) {
    this.sent += 1;
    const reply = `${this.inbox}.api.${this.sent}`;
    this.publish(subject, reply, body);
    const deadline = Date.now() + NATS_TIMEOUT_MS;
    for (;;) {
      const got = await this.message(deadline);
      if (got === null) throw new Error(`NATS did not answer ${subject} within ${NATS_TIMEOUT_MS} ms`);
      if (got.subject !== reply) continue; // something of an earlier fetch, too late
      if (got.headers.toString("utf8").startsWith("NATS/1.0 503")) {
        throw new BusRefused(`no JetStream answered ${subject} (its nodes may be choosing a leader)`);
      }
      const answer = JSON.parse(got.payload.toString("utf8"));
      if (answer.error) {
        const Refused = answer.error.err_code === 10059 ? NoStream : BusRefused;
        throw new Refused(`NATS refused ${subject}: ${answer.error.description}`);
      }
      return answer;
    }
  }

  // the protocol itself: lines and messages on the socket

  publish(subject, reply, body) {
    const payload = Buffer.from(JSON.stringify(body));
    this.socket.write(Buffer.concat([
      Buffer.from(`PUB ${subject} ${reply} ${payload.length}\r\n`), payload, CRLF]));
  }

  // Splits what arrived into lines and messages (answering the server's PINGs at once);
  // returns the bytes of an unfinished one, for when the rest comes.
  parse(buffer) {
    for (;;) {
      const end = buffer.indexOf(CRLF);
      if (end < 0) return buffer;
      const line = buffer.subarray(0, end).toString("utf8");
      if (!line.startsWith("MSG ") && !line.startsWith("HMSG ")) {
        if (line === "PING") this.socket.write("PONG\r\n");
        else this.received.push({ line });
        buffer = buffer.subarray(end + 2);
        continue;
      }
      const words = line.split(" "); // [H]MSG subject sid [reply] [header bytes] bytes
      const withHeaders = words[0] === "HMSG";
      const total = Number(words[words.length - 1]);
      const split = withHeaders ? Number(words[words.length - 2]) : 0;
      if (buffer.length < end + 2 + total + 2) return buffer; // the rest is on its way
      const data = buffer.subarray(end + 2, end + 2 + total);
      this.received.push({
        subject: words[1], reply: words.length === 5 + (withHeaders ? 1 : 0) ? words[3] : "",
        headers: data.subarray(0, split), payload: data.subarray(split) });
      buffer = buffer.subarray(end + 2 + total + 2);
    }
  }

  poke() {
    if (this.wake !== null) this.wake();
  }

  // The next line or message off the socket; null at the deadline.
  async take(deadline) {
    while (this.received.length === 0) {
      if (this.ended !== null) throw this.ended;
      const left = deadline - Date.now();
      if (left <= 0) return null;
      await new Promise((resolve) => {
        const timer = setTimeout(resolve, left);
        this.wake = () => { clearTimeout(timer); resolve(); };
      });
      this.wake = null;
    }
    return this.received.shift();
  }

  // The next message, past other lines.
  async message(deadline) {
    for (;;) {
      const got = await this.take(deadline);
      if (got === null || got.line === undefined) return got;
      this.check(got.line);
    }
  }

  // A line that is not a message: news (INFO), PONG, +OK, or -ERR: the server refused
  // something (authorization, permissions). (PING is answered as it arrives: parse.)
  check(line) {
    if (line.startsWith("-ERR")) {
      throw new BusRefused(`NATS refused: ${line.slice(5).replace(/^'|'$/g, "")}`);
    }
  }

  close() {
    if (this.socket !== null) this.socket.destroy();
    this.socket = null;
    this.consumer = null;
    this.pull = null;
  }
}

// --- Asked to trespass: POST /chaos/trespass (docs/protocol.md) --------------------------
//
// The lesson's rule is that no service opens another's database file. `msshop trespass
// query --into users` asks us to break it on purpose, as a bug would: open and read the
// file msshop names, and answer what happened. Where msshop has the kernel hold the rule
// (Landlock), the operating system refuses; where nothing refuses, msshop reports the rule
// broken. Either way one line goes to our log.

const TRESPASS_WAYS = ["open"]; // fs.openSync and a read (Node 20 has no SQLite)

// Tries what it is asked to, and remembers how often it was refused (for /health).
class Trespasser {
  constructor(service) {
    this.service = service;
    this.tried = 0;
    this.refused = 0;
    this.last = null;
  }

  attempt(body) {
    if (!body || typeof body !== "object") {
      throw new HttpError(422, 'send {"into": "<service>", "path": "<its file>"}');
    }
    const { into, path: file } = body;
    const how = body.how === undefined ? "open" : body.how;
    if (typeof into !== "string" || !/^[a-z][a-z0-9-]{0,63}$/.test(into)) {
      throw new HttpError(422, `into ${show(into)}: name the service whose file to try`);
    }
    if (typeof file !== "string" || !file.startsWith("/") || file.includes("\0")) {
      throw new HttpError(422, `path ${show(file)}: give the absolute path of ${into}'s file`);
    }
    if (!TRESPASS_WAYS.includes(how)) {
      throw new HttpError(422, `how ${show(how)} is not one of: ${TRESPASS_WAYS.join(", ")}`);
    }
    let error = null;
    try {
      const fd = fs.openSync(file, "r");
      try {
        fs.readSync(fd, Buffer.alloc(100), 0, 100, 0);
      } finally {
        fs.closeSync(fd);
      }
    } catch (err) {
      error = `${err.code || err.name}: ${err.message}`;
    }
    if (error !== null) {
      log("WARNING", `trespass, on purpose: tried to read ${into}'s file ${file} (${how}): ` +
          `refused: ${error}`);
    } else {
      log("ERROR", `trespass, on purpose: read ${into}'s file ${file} (${how}) and nothing ` +
          "refused it: the isolation rule did not hold");
    }
    const answer = { service: this.service, into, tried: file, how, refused: error !== null,
                     error };
    this.tried += 1;
    if (error !== null) this.refused += 1;
    this.last = answer;
    return answer;
  }

  health() {
    return { tried: this.tried, refused: this.refused, last: this.last };
  }
}

// --- The HTTP side ------------------------------------------------------------------------

function choice(query, name, allowed) {
  const value = query.has(name) ? query.get(name) : allowed[0];
  if (!allowed.includes(value)) {
    throw new HttpError(422, `${name} ${show(value)} is not one of: ${allowed.join(", ")}`);
  }
  return value;
}

const DIGITS = /^[0-9]+$/;

function number(query, name, least, most, fallback) {
  if (!query.has(name)) return fallback;
  const raw = query.get(name);
  if (!DIGITS.test(raw) || Number(raw) < least || Number(raw) > most) {
    throw new HttpError(422, `query parameter ${name}=${show(raw)} must be an integer from ` +
                        `${least} to ${most}`);
  }
  return Number(raw);
}

function userIdOf(raw) {
  if (!DIGITS.test(raw) || Number(raw) < 1 || Number(raw) > MAX_ID) {
    throw new HttpError(422, `user_id ${show(raw)} is not an id: ids are positive integers`);
  }
  return Number(raw);
}

class Service {
  constructor(settings) {
    this.settings = settings;
    this.consumer = new Consumer(settings);
    this.tracer = new Tracer(settings.service);
    this.trespasser = new Trespasser(settings.service);
    this.startedAt = Date.now() / 1000;
  }

  // Still 200 when the consumer fails ("degraded", and why): the process is up, and
  // direct-call still works.
  health() {
    const { failing, model } = this.consumer;
    return { service: this.settings.service, status: failing ? "degraded" : "ok",
             pid: process.pid, ready_at: this.startedAt, db: this.consumer.file.path,
             rows: model.rows(), problems: failing ? [`the consumer fails: ${failing}`] : [],
             consumer: { ...this.consumer.freshness(), applied: this.consumer.applied,
                         dead_letters: model.deadCount },
             trespass: this.trespasser.health() };
  }

  // Only the sandbox's owner may read spans and dead letters (they hold its data). msshop
  // sends its token; we hold only the token's digest, enough to check it.
  checkOwner(authorization, what) {
    const header = String(authorization || "");
    const secret = header.slice(0, 7).toLowerCase() === "bearer " ? header.slice(7).trim() : "";
    if (!secret) {
      throw new HttpError(401, `${what} needs the sandbox's token: send ` +
                          "'authorization: Bearer <token from state.json>'");
    }
    const digest = crypto.createHash("sha256").update(secret).digest();
    const expected = Buffer.from(String(this.settings.ownerDigest), "hex");
    if (expected.length !== digest.length || !crypto.timingSafeEqual(digest, expected)) {
      throw new HttpError(403, `${what} refused: that is not this sandbox's token`);
    }
  }

  spans(query, authorization) {
    this.checkOwner(authorization, "reading spans");
    const traceId = query.get("trace_id") || "";
    if (!/^[0-9a-f]{32}$/.test(traceId)) {
      throw new HttpError(422, "ask for one trace: GET /spans?trace_id=<32 hex digits>");
    }
    return { service: this.settings.service, spans: this.tracer.of(traceId) };
  }

  deadLetters(query, authorization) {
    this.checkOwner(authorization, "reading dead letters");
    const limit = number(query, "limit", 1, 10_000, 50);
    const { model } = this.consumer;
    return { count: model.deadCount, dead_letters: model.deadLetters.slice(-limit).reverse() };
  }

  // The question, as a server span in the caller's trace (a new trace if it sent no
  // traceparent); our calls and reads are its children.
  async userOrders(rawId, query, traceparent) {
    const [traceId, parent] = parseTraceparent(traceparent);
    const attributes = { "http.route": "/user-orders/{user_id}", "http.request.method": "GET" };
    return this.tracer.around(traceId, parent, "GET /user-orders/{user_id}", "server",
                              attributes, async (span) => {
      const traced = {
        traceId,
        around: (name, kind, attrs, block) =>
          this.tracer.around(traceId, span.span_id, name, kind, attrs, block),
      };
      try {
        const answer = await this.answerUserOrders(userIdOf(rawId), query, traced);
        attributes["http.response.status_code"] = 200;
        return answer;
      } catch (err) {
        attributes["http.response.status_code"] = err instanceof HttpError ? err.status : 500;
        throw err;
      }
    });
  }

  async answerUserOrders(userId, query, traced) {
    const strategy = choice(query, "strategy", ["replicated", "direct-call"]);
    const fanout = choice(query, "fanout", ["batched", "naive"]);
    const after = number(query, "after", 0, MAX_ID, 0);
    const waitMs = number(query, "wait_ms", 0, MAX_WAIT_MS, 2000);
    choice(query, "kept", ["1", "0", "true", "false"]); // accepted: we keep no answers
    if (["1", "true"].includes(choice(query, "partial", ["0", "1", "false", "true"]))) {
      throw new HttpError(422, "partial answers are not served by this example; ask " +
                          "without partial");
    }
    if (strategy === "direct-call") {
      const [user, orders] = await directCall(this.settings, traced, userId, fanout);
      return { question: "user-orders", strategy, fanout, user, orders,
               freshness: { live: true }, trace_id: traced.traceId };
    }
    return this.replicated(userId, after, waitMs, traced);
  }

  async replicated(userId, after, waitMs, traced) {
    const consumer = this.consumer;
    if (after > consumer.position && !(await consumer.waitFor(after, waitMs))) {
      throw new HttpError(503, `the read model has not applied bus position ${after} within ` +
                          `${waitMs} ms (it is at ${consumer.position} of ${consumer.head}); ` +
                          "try again, or ask with a longer wait_ms",
                          { freshness: consumer.freshness() });
    }
    const freshness = consumer.freshness();
    if (consumer.catchingUpTo !== null) {
      throw new HttpError(503, `not ready: catching up (position ${consumer.position} of ` +
                          `${consumer.catchingUpTo}); ask again in a moment, or ask with ` +
                          "strategy=direct-call", { freshness });
    }
    const attributes = { "db.system": "json-file", "db.name": MODEL_FILE,
                         "db.operation": "SELECT", "db.sql.table": "users, orders, products",
                         "msshop.keys": [userId] };
    const [user, orders] = await traced.around("SELECT users, orders, products", "internal",
                                               attributes, async () => {
      const found = consumer.model.userOrders(userId);
      attributes["msshop.rows"] = found[1].length + (found[0] ? 1 : 0);
      return found;
    });
    if (user === null) {
      throw new HttpError(404, `no user with id ${userId} (the read model has applied the ` +
                          `bus up to position ${freshness.position})`, { freshness });
    }
    return { question: "user-orders", strategy: "replicated", user, orders, freshness,
             trace_id: traced.traceId };
  }

  // Route one request; resolves its document.
  async route(req) {
    const url = new URL(req.url, "http://service-d");
    const parts = url.pathname.split("/");
    if (req.method === "POST" && url.pathname === "/chaos/trespass") {
      const body = await jsonBody(req); // read first: the connection goes on after
      this.checkOwner(req.headers.authorization, "trespass");
      return this.trespasser.attempt(body);
    }
    if (req.method !== "GET") {
      throw new HttpError(405, `${req.method} is not allowed here; use GET (POST only for ` +
                          "/chaos/trespass)");
    }
    if (url.pathname === "/health") return this.health();
    if (url.pathname === "/spans") return this.spans(url.searchParams, req.headers.authorization);
    if (url.pathname === "/dead-letters") {
      return this.deadLetters(url.searchParams, req.headers.authorization);
    }
    if (parts.length === 3 && parts[1] === "user-orders") {
      let rawId;
      try {
        rawId = decodeURIComponent(parts[2]);
      } catch {
        rawId = parts[2];
      }
      return this.userOrders(rawId, url.searchParams, req.headers.traceparent);
    }
    throw new HttpError(404, `${this.settings.service} has no route GET ${url.pathname}`);
  }

  async handle(req, res) {
    let status = 200;
    let document;
    try {
      document = await this.route(req);
    } catch (err) {
      if (err instanceof HttpError) {
        status = err.status;
      } else { // a bug: one line in the log, a JSON 500 to the caller
        log("ERROR", `GET ${req.url} failed: ${err.stack}`);
        status = 500;
        err.message = `${err.name}: ${err.message}; see the service's log`;
        err.extra = {};
      }
      document = { error: err.message, status, service: this.settings.service, ...err.extra };
    }
    const body = JSON.stringify(document);
    const headers = { "content-type": "application/json",
                      "content-length": Buffer.byteLength(body) };
    if (status === 405) headers.connection = "close"; // we did not read the body they sent
    res.writeHead(status, headers);
    res.end(body);
  }
}

// A small JSON body (POST /chaos/trespass): 413 beyond 64 KiB, 422 if it is not JSON.
function jsonBody(req) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    let size = 0;
    req.on("data", (chunk) => {
      size += chunk.length;
      if (size <= 65536) chunks.push(chunk);
    });
    req.on("error", reject);
    req.on("end", () => {
      if (size > 65536) {
        reject(new HttpError(413, "a trespass request is a small JSON object"));
        return;
      }
      try {
        resolve(JSON.parse(Buffer.concat(chunks).toString("utf8") || "null"));
      } catch {
        reject(new HttpError(422, "the body is not JSON"));
      }
    });
  });
}

function serve(settings) {
  const service = new Service(settings);
  const server = http.createServer((req, res) => {
    // any other body is not ours to read: drain it so the connection can go on
    if (!(req.method === "POST" && req.url === "/chaos/trespass")) req.resume();
    service.handle(req, res).catch((err) => log("ERROR", `answering ${req.url}: ${err.stack}`));
  });
  // the head and the body can go out in two writes: without noDelay, Nagle's algorithm
  // holds the body until the client's delayed ACK, 40 ms later, on every kept-alive answer
  server.on("connection", (socket) => socket.setNoDelay(true));
  server.keepAliveTimeout = 60_000; // msshop's clients keep their connection between asks

  const stop = () => {
    service.consumer.stop(); // ends the open long-poll; the file is always whole
    server.close();
    server.closeAllConnections();
    log("INFO", "stopped");
    process.exit(0);
  };
  process.on("SIGTERM", stop);
  process.on("SIGINT", stop);

  server.listen(settings.port, settings.host, () => {
    log("INFO", `${settings.service} listening on http://${settings.host}:${settings.port}, ` +
        `read model ${service.consumer.file.path}, from bus position ${service.consumer.position}`);
    service.consumer.run();
  });
}

serve(loadSettings());
