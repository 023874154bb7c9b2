#!/usr/bin/python3
# bench/dashboard.sh's fixture: into a stopped server's database, N sessions copied from one real
# session (ended states, spread over the board's end columns and titles), and E events appended
# to that real session (a realistic mix: command output with ANSI colours, markdown messages, tool
# calls and results, status changes, commits).  Usage: dashboard_fill.py DB SID N E
import json, random, sqlite3, sys, time

db, sid, n, e = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
random.seed(7)
con = sqlite3.connect(db)
con.execute("PRAGMA foreign_keys=ON")
cols = [r[1] for r in con.execute("PRAGMA table_info(sessions)")]
row = dict(zip(cols, con.execute("SELECT * FROM sessions WHERE id=?", (sid,)).fetchone()))
alpha = "abcdefghijklmnopqrstuvwxyz234567"
now = int(time.time() * 1000)
words = "fix add refactor test the parser login cache flaky build docs endpoint retry timeout".split()
states = ["completed"] * 6 + ["failed", "stopped"]
with con:
    for i in range(n - 1):
        r = dict(row)
        r["id"] = "s-" + "".join(random.choice(alpha) for _ in range(12))
        r["branch"] = f"nightshift/{r['id']}"
        r["state"] = random.choice(states)
        r["title"] = " ".join(random.choice(words) for _ in range(random.randint(3, 9)))
        r["created_at"] = r["updated_at"] = now - random.randint(0, 30 * 86400 * 1000)
        r["sandbox_id"] = None
        con.execute(f"INSERT INTO sessions ({','.join(cols)}) VALUES ({','.join('?' * len(cols))})", [r[c] for c in cols])
    seq = con.execute("SELECT coalesce(max(seq),0) FROM events WHERE session_id=?", (sid,)).fetchone()[0]
    ts = now - e * 50
    md = "## Plan\n\n1. Read `src/parser.c`\n2. **Fix** the off-by-one in `next_token()`\n3. Run the tests\n\n```c\nif (p >= end)\n        return -1;\n```\n"
    for k in range(e):
        seq += 1
        ts += 50
        x = k % 20
        if x < 13:
            typ, data = "command_output", {"stream": "stdout", "text": f"\x1b[32mok\x1b[0m {k} test_case_{k % 97} ({random.randint(1, 900)} ms)\n" + ("  detail line\n" if x % 3 == 0 else "")}
        elif x < 15:
            typ, data = "message", {"role": "assistant", "text": md if x == 13 else f"Looking at line {k} of the log; the failure is in `case_{k % 97}`."}
        elif x < 17:
            typ, data = "tool_call", {"id": f"t{k}", "name": "Bash", "input": {"command": f"make test TEST=case_{k % 97}"}}
        elif x < 18:
            typ, data = "tool_result", {"id": f"t{k - 1}", "output": "PASS\n" * 3, "is_error": False}
        elif x < 19:
            typ, data = "status", {"from": "idle", "to": "running", "reason": "turn started", "time": ts}
        else:
            typ, data = "commit", {"sha": "%040x" % random.getrandbits(160), "branch": row["branch"], "created": False, "commits": 1,
                                   "summary": f"fix case {k}", "files_changed": 2, "additions": 10, "deletions": 3, "files_truncated": False,
                                   "files": [{"path": "src/parser.c", "status": "M"}, {"path": "tests/case.c", "status": "A"}]}
        con.execute("INSERT INTO events (session_id, seq, ts, type, data) VALUES (?,?,?,?,?)", (sid, seq, ts, typ, json.dumps(data)))
print(con.execute("SELECT count(*) FROM sessions").fetchone()[0], con.execute("SELECT count(*) FROM events WHERE session_id=?", (sid,)).fetchone()[0])
