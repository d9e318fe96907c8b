// A query service in JavaScript (Node 20, no packages) that tries, at start, every door to
// another service's database (users.db) and to the rest of the sandbox, then serves
// GET /health. What each door gave is printed (its log) and written to report.json in its
// own directory, for tests/e2e/test_kernel_isolation.py to read.
"use strict";
const fs = require("fs");
const path = require("path");
const http = require("http");
const child = require("child_process");

const DATA = process.env.MSSHOP_DATA_DIR;
const SANDBOX = path.dirname(path.dirname(DATA));
const THEIRS = path.join(path.dirname(DATA), "users", "users.db");

const doors = {
  "read": () => fs.readFileSync(THEIRS).length,
  "child": () => {
    try {
      return child.execFileSync("cat", [THEIRS], { stdio: ["ignore", "pipe", "pipe"] }).length;
    } catch (err) {
      throw new Error(String(err.stderr).trim());  // what cat was told
    }
  },
  "symlink": () => {
    const alias = path.join(DATA, "alias.db");
    fs.rmSync(alias, { force: true });
    fs.symlinkSync(THEIRS, alias);
    return fs.readFileSync(alias).length;
  },
  "hardlink": () => {
    const alias = path.join(DATA, "hard.db");
    fs.rmSync(alias, { force: true });
    fs.linkSync(THEIRS, alias);
    return fs.readFileSync(alias).length;
  },
  "write beside": () => fs.writeFileSync(path.join(SANDBOX, "data", "planted"), "x"),
  "read the state": () => fs.readFileSync(path.join(SANDBOX, "state.json")).length,
  "own file": () => {
    fs.writeFileSync(path.join(DATA, "mine.json"), "{}");
    return fs.readFileSync(path.join(DATA, "mine.json"), "utf8");
  },
};

const report = {};
for (const [name, door] of Object.entries(doors)) {
  try {
    report[name] = "allowed: " + JSON.stringify(door());
  } catch (err) {
    report[name] = (err.code || err.name) + ": " + err.message.split("\n")[0];
  }
  console.log(`door ${name}: ${report[name]}`);
}
fs.writeFileSync(path.join(DATA, "report.json.tmp"), JSON.stringify(report));
fs.renameSync(path.join(DATA, "report.json.tmp"), path.join(DATA, "report.json"));

const server = http.createServer((req, res) => {
  const body = JSON.stringify({ service: "query", status: "ok", pid: process.pid,
                                ready_at: null, chaos: null, db: DATA, rows: {} });
  res.writeHead(200, { "content-type": "application/json" });
  res.end(body);
});
server.listen(Number(process.env.MSSHOP_PORT), process.env.MSSHOP_HOST);
process.on("SIGTERM", () => { server.close(); process.exit(0); });
