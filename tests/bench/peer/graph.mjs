// The peer of the same-work benchmark (issue 16): one orch-supervisor task
// of the workflow benchmark (tests/bench/run.py --only workflow: mock-fast,
// auto-approved, a two-file repository, no verification) done by a
// LangGraph.js StateGraph with its SQLite checkpointer, durability "sync":
// planning -> implementing -> reviewing -> verifying, each node making the
// same model requests to the same mock (fetch) and running the same git
// command lines with the same environment (child_process), in the order
// orch-worker runs them.  tests/bench/peer.py drives it and checks, by
// strace, that both sides ran the same git argv.
//
//   node graph.mjs --mock URL --repo DIR --state DIR --tasks N
//                  --concurrency C --prompts FILE
//
// --prompts is a JSON file the driver writes from a captured run of ours:
// per stage the system prompt and the tools, and the model name, so that
// the requests stay byte-identical when the product's prompts change.
// Protocol on stdio: prints "ready" once loaded, waits for a line, runs the
// N tasks (C in flight, each its own thread_id), prints one JSON line
// {t0, t1, done, failed, errors} (epoch seconds), then waits for a line
// again before it exits, so that the driver can read its /proc entry.

import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import readline from "node:readline";
import { Annotation, END, START, StateGraph } from "@langchain/langgraph";
import { SqliteSaver } from "@langchain/langgraph-checkpoint-sqlite";

function parseArgs(argv) {
  const a = { tasks: 1, concurrency: 1, apiKey: "sk-bench" };
  const names = {
    "--mock": "mock", "--repo": "repo", "--state": "state",
    "--tasks": "tasks", "--concurrency": "concurrency",
    "--prompts": "prompts", "--api-key": "apiKey",
    "--synchronous": "synchronous",
  };
  for (let i = 2; i < argv.length; i += 2) {
    const k = names[argv[i]];
    if (k === undefined || i + 1 >= argv.length)
      throw new Error(`usage: graph.mjs ${Object.keys(names).join(" X ")}`);
    a[k] = argv[i + 1];
  }
  for (const k of ["mock", "repo", "state", "prompts"])
    if (!a[k]) throw new Error(`graph.mjs: --${k} is required`);
  a.tasks = Number(a.tasks);
  a.concurrency = Number(a.concurrency);
  if (a.synchronous !== undefined &&
      !["OFF", "NORMAL", "FULL", "EXTRA"].includes(a.synchronous))
    throw new Error("graph.mjs: --synchronous OFF, NORMAL, FULL or EXTRA");
  if (!Number.isInteger(a.tasks) || a.tasks < 0 ||
      !Number.isInteger(a.concurrency) || a.concurrency < 1)
    throw new Error("graph.mjs: --tasks >= 0 and --concurrency >= 1");
  return a;
}

const args = parseArgs(process.argv);
const prompts = JSON.parse(fs.readFileSync(args.prompts, "utf8"));
const REQUEST = "Benchmark task";
const REPLY_MAX = 1 << 20; // mock-fast's replies are under 1 KiB
fs.mkdirSync(path.join(args.state, "worktrees"), { recursive: true });

// The state directory's id, as orch-supervisor's: the trailer of every
// commit and, its first 12 digits, the alternative ref names.
const idFile = path.join(args.state, "state-id");
if (!fs.existsSync(idFile))
  fs.writeFileSync(idFile, randomBytes(16).toString("hex") + "\n");
const STATE_ID = fs.readFileSync(idFile, "utf8").trim();
const SHORT = STATE_ID.slice(0, 12);

// common/git.c's environment: the caller's PATH, HOME and LANG only, then
// no system or global configuration, no hooks, no fsmonitor, no
// attributes file, no pager, no automatic gc; GIT_DIR and GIT_WORK_TREE
// for a worktree's commands.
function gitEnv(wt) {
  const e = {};
  for (const k of ["PATH", "HOME", "LANG"])
    if (process.env[k] !== undefined) e[k] = process.env[k];
  Object.assign(e, {
    GIT_CONFIG_NOSYSTEM: "1",
    GIT_CONFIG_GLOBAL: "/dev/null",
    GIT_ALLOW_PROTOCOL: "file:https:ssh",
    GIT_TERMINAL_PROMPT: "0",
    GIT_AUTHOR_NAME: "orch-supervisor",
    GIT_AUTHOR_EMAIL: "orch@localhost",
    GIT_COMMITTER_NAME: "orch-supervisor",
    GIT_COMMITTER_EMAIL: "orch@localhost",
  });
  if (wt !== undefined) {
    e.GIT_DIR = wt.gitdir;
    e.GIT_WORK_TREE = wt.dir;
  }
  const cfg = [["core.hooksPath", "/dev/null"], ["core.fsmonitor", "false"],
    ["core.attributesFile", "/dev/null"], ["core.pager", "cat"],
    ["gc.auto", "0"], ["maintenance.auto", "false"]];
  cfg.forEach(([k, v], i) => {
    e[`GIT_CONFIG_KEY_${i}`] = k;
    e[`GIT_CONFIG_VALUE_${i}`] = v;
  });
  e.GIT_CONFIG_COUNT = String(cfg.length);
  return e;
}

// git --no-pager -C dir ARGS, standard input from input; resolves
// {code, out}; a status not in ok rejects.
function git(dir, argv, { wt, input, ok = [0] } = {}) {
  return new Promise((resolve, reject) => {
    // Standard input is /dev/null unless there is input, as in git.c.
    const p = spawn("git", ["--no-pager", "-C", dir, ...argv], {
      env: gitEnv(wt),
      stdio: [input === undefined ? "ignore" : "pipe", "pipe", "pipe"],
    });
    const out = [], err = [];
    p.stdout.on("data", (b) => out.push(b));
    p.stderr.on("data", (b) => err.push(b));
    p.on("error", reject);
    p.on("close", (code) => {
      const o = Buffer.concat(out).toString("utf8");
      if (!ok.includes(code))
        reject(new Error(`git ${argv.join(" ")}: exit ${code}: ` +
          Buffer.concat(err).toString("utf8").slice(0, 500)));
      else
        resolve({ code, out: o });
    });
    if (input !== undefined) {
      p.stdin.on("error", () => {}); // git's exit status tells
      p.stdin.end(input);
    }
  });
}

// orch-worker adds and removes the worktrees of one repository one at a
// time (an flock on its common directory): a concurrent `worktree add`
// fails on the record another is writing.  One process here: a queue.
let worktrees = Promise.resolve();
function serially(fn) {
  const p = worktrees.then(fn);
  worktrees = p.catch(() => {});
  return p;
}

const line = async (dir, argv, o) => (await git(dir, argv, o)).out.trim();

// A ref's commit, or null when it does not exist, read from git's files
// as orch-worker reads them (the repository's refs are files): the loose
// file, else its line in packed-refs.
function refGet(ref) {
  try {
    const v = fs.readFileSync(path.join(args.gitdir, ref), "utf8");
    if (!/^[0-9a-f]{40}\n$/.test(v)) throw new Error(`${ref}: ${v}`);
    return v.trim();
  } catch (e) {
    if (e.code !== "ENOENT") throw e;
  }
  let packed = "";
  try {
    packed = fs.readFileSync(path.join(args.gitdir, "packed-refs"), "utf8");
  } catch (e) {
    if (e.code !== "ENOENT") throw e;
  }
  const m = packed.split("\n").find((l) => l.endsWith(` ${ref}`));
  return m ? m.split(" ")[0] : null;
}

// Whether the workspace may hold a file over the snapshot limit or a
// nested repository (orch-worker's walk before a snapshot; git's ls-files
// is asked only when it may): none here.
function mayExclude(root, sub = "", seen = { n: 0 }) {
  for (const d of fs.readdirSync(path.join(root, sub),
    { withFileTypes: true })) {
    const rel = sub ? `${sub}/${d.name}` : d.name;
    if (d.name === ".git") {
      if (sub) return true;
      continue;
    }
    if (++seen.n > 1000) return true;
    if (d.isDirectory()) {
      if (mayExclude(root, rel, seen)) return true;
    } else if (d.isFile() &&
               fs.lstatSync(path.join(root, rel)).size > 52428800) {
      return true;
    }
  }
  return false;
}

const withTrailer = (m) =>
  `${m.replace(/\n+$/, "")}${m ? "\n\n" : ""}Orch-State: ${STATE_ID}\n`;

// One streamed chat completion; its single tool call.
async function chat(task, stage, messages) {
  const p = prompts.stages[stage];
  // A Buffer, not a string: fetch sends a string chunked, a Buffer with
  // its Content-Length, as orch-worker does.
  const body = Buffer.from(JSON.stringify({
    model: prompts.model,
    messages: [{ role: "system", content: p.system }, ...messages],
    stream: true,
    stream_options: { include_usage: true },
    tools: p.tools,
  }));
  const r = await fetch(`${args.mock}/chat/completions`, {
    method: "POST",
    headers: {
      "User-Agent": "orch-worker",
      Authorization: `Bearer ${args.apiKey}`,
      "Content-Type": "application/json",
      Accept: "text/event-stream",
      "X-Orch-Task-Id": String(task),
      "X-Orch-Stage": stage,
    },
    body,
  });
  // Read at most REPLY_MAX bytes: the reply is the model's to make long.
  const parts = [];
  let n = 0;
  for await (const c of r.body ?? []) {
    if ((n += c.length) > REPLY_MAX) {
      throw new Error(`model: a reply over ${REPLY_MAX} bytes`);
    }
    parts.push(c);
  }
  const text = Buffer.concat(parts).toString("utf8");
  if (r.status !== 200)
    throw new Error(`model: HTTP ${r.status}: ${text.slice(0, 300)}`);
  const call = { id: "", name: "", arguments: "" };
  for (const l of text.split("\n")) {
    if (!l.startsWith("data: ") || l === "data: [DONE]") continue;
    for (const c of JSON.parse(l.slice(6)).choices ?? []) {
      for (const t of c.delta?.tool_calls ?? []) {
        call.id += t.id ?? "";
        call.name += t.function?.name ?? "";
        call.arguments += t.function?.arguments ?? "";
      }
    }
  }
  if (!call.name) throw new Error(`model: no tool call in ${stage}`);
  return { ...call, args: JSON.parse(call.arguments) };
}

// The files of a directory, recursively and sorted, .git left out.
function listFiles(root, sub = "") {
  const out = [];
  for (const d of fs.readdirSync(path.join(root, sub),
    { withFileTypes: true })) {
    if (d.name === ".git") continue;
    const rel = sub ? `${sub}/${d.name}` : d.name;
    if (d.isDirectory()) out.push(`${rel}/`, ...listFiles(root, rel));
    else out.push(rel);
  }
  return out.sort();
}

// A path the model named, inside the workspace, or an error.
function inside(root, p) {
  if (typeof p !== "string" || p === "" || p.includes("\0") ||
      path.isAbsolute(p) || p.split("/").includes(".."))
    throw new Error(`write_file: a bad path ${JSON.stringify(p)}`);
  return path.join(root, p);
}

function worktree(id) {
  return {
    dir: path.join(args.state, "worktrees", `task-${id}`),
    gitdir: path.join(args.gitdir, "worktrees", `task-${id}`),
  };
}

const State = Annotation.Root({
  id: Annotation(),
  base: Annotation(),
  plan: Annotation(),
  snapshot: Annotation(),
  stat: Annotation(),
  result: Annotation(),
  verdict: Annotation(),
});

async function planning(s) {
  const wt = worktree(s.id);
  await serially(() => git(args.repo, ["worktree", "add", "--detach",
    "--force", "--force", "--", wt.dir, s.base]));
  const files = listFiles(wt.dir).join("\n");
  const readme = fs.readFileSync(path.join(wt.dir, "README.md"), "utf8");
  const c = await chat(s.id, "planning", [{ role: "user", content:
    `Request:\n${REQUEST}\n\nFiles in the repository:\n${files}\n\n` +
    `README.md:\n${readme}` }]);
  return { plan: c.args.plan };
}

async function implementing(s) {
  const wt = worktree(s.id);
  const ref = `refs/orch/tasks/${s.id}`;
  const branch = `refs/heads/orch/task-${s.id}`;
  // The snapshot ref: ours unless another state directory made it.
  refGet(`${ref}-${SHORT}`);
  const old = refGet(ref);
  const msgs = [{ role: "user", content:
    `Request:\n${REQUEST}\n\nThe approved plan:\n${s.plan}` }];
  const w = await chat(s.id, "implementing", msgs);
  const content = String(w.args.content);
  fs.writeFileSync(inside(wt.dir, w.args.path), content);
  msgs.push({ role: "assistant", content: null, tool_calls: [{ id: w.id,
    type: "function", function: { name: w.name, arguments: w.arguments } }] },
  { role: "tool", tool_call_id: w.id,
    content: `wrote ${Buffer.byteLength(content)} bytes to ${w.args.path}` });
  // The snapshot after the step (ws_snapshot): a new ref, so no tree to
  // compare with; the base is the full hash submission read.
  const base = old ?? s.base;
  if (mayExclude(wt.dir))
    throw new Error("the benchmark's workspace has nothing to leave out");
  await git(wt.dir, ["add", "-A", "--pathspec-from-file=-",
    "--pathspec-file-nul"], { wt, input: ".\0" });
  const tree = await line(wt.dir, ["write-tree"], { wt });
  const snap = await line(wt.dir, ["commit-tree", "--no-gpg-sign", tree, "-p",
    base], { wt, input: withTrailer(`implementing step 1: ${w.name}`) });
  await git(wt.dir, ["update-ref", "-m", "orch-supervisor", ref, snap,
    old ?? ""], { wt });
  // Changed at all (finish)?  The one diffstat, kept for the result.
  const stat = (await git(wt.dir, ["diff", "--no-color", "--no-ext-diff",
    "--no-textconv", "--stat", s.base, snap, "--"], { wt })).out;
  const f = await chat(s.id, "implementing", msgs);
  // The result branch, squashed (ws_squash): the snapshot's tree.
  refGet(`${branch}-${SHORT}`);
  const had = refGet(branch);
  const result = await line(wt.dir, ["commit-tree", "--no-gpg-sign", tree,
    "-p", s.base],
  { wt, input: withTrailer(`${REQUEST}\n\n${f.args.summary}`) });
  await git(wt.dir, ["update-ref", "-m", "orch-supervisor", branch, result,
    had ?? ""], { wt });
  return { snapshot: snap, result, stat };
}

async function reviewing(s) {
  const wt = worktree(s.id);
  const diff = (await git(wt.dir, ["diff", "--no-color", "--no-ext-diff",
    "--no-textconv", s.base, s.snapshot, "--"], { wt })).out;
  const c = await chat(s.id, "reviewing", [{ role: "user", content:
    `Request:\n${REQUEST}\n\nThe approved plan:\n${s.plan}\n\nThe change, ` +
    `as a diff against the base commit:\n${diff || "(no changes)"}` }]);
  if (c.args.verdict !== "approve")
    throw new Error(`review: ${c.args.verdict}`);
  return { verdict: c.args.verdict };
}

async function verifying(s) {
  await serially(() => git(args.repo, ["worktree", "remove", "--force",
    worktree(s.id).dir]));
  return {};
}

const saver = SqliteSaver.fromConnString(path.join(args.state,
  "checkpoints.db"));
// As shipped unless asked: better-sqlite3's SQLite in WAL mode, whose
// default synchronous is NORMAL (a commit is not flushed to disk).
// orch-supervisor commits with FULL; --synchronous FULL makes the two
// equally durable.
if (args.synchronous !== undefined)
  saver.db.pragma(`synchronous = ${args.synchronous}`);
const graph = new StateGraph(State)
  .addNode("planning", planning)
  .addNode("implementing", implementing)
  .addNode("reviewing", reviewing)
  .addNode("verifying", verifying)
  .addEdge(START, "planning")
  .addEdge("planning", "implementing")
  .addEdge("implementing", "reviewing")
  .addEdge("reviewing", "verifying")
  .addEdge("verifying", END)
  .compile({ checkpointer: saver });

// A task: the repository checked as orch-supervisor's API checks it on
// submission, then the graph on a thread of its own.
async function runTask(id) {
  const [, gitdir, base] = (await line(args.repo, ["rev-parse",
    "--show-toplevel", "--absolute-git-dir", "--verify", "-q",
    "HEAD^{commit}"])).split("\n");
  args.gitdir = gitdir;
  await graph.invoke({ id, base }, {
    configurable: { thread_id: `task-${id}` }, durability: "sync",
  });
}

const stdin = readline.createInterface({ input: process.stdin });
const nextLine = () => new Promise((resolve) => stdin.once("line", resolve));

process.stdout.write("ready\n");
await nextLine();
const t0 = Date.now() / 1e3;
let next = 1, done = 0, failed = 0;
const errors = [];
async function lane() {
  while (next <= args.tasks) {
    const id = next++;
    try {
      await runTask(id);
      done++;
    } catch (e) {
      failed++;
      if (errors.length < 5) errors.push(`task ${id}: ${e.message}`);
    }
  }
}
await Promise.all(Array.from({ length: args.concurrency }, lane));
const t1 = Date.now() / 1e3;
const synchronous = saver.db.pragma("synchronous", { simple: true });
process.stdout.write(JSON.stringify({ t0, t1, done, failed, errors,
  synchronous }) + "\n");
await nextLine();
stdin.close();
process.exit(0);
