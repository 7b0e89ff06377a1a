#!/usr/bin/env python3
"""Reference verifier for chancery trial databases, written from docs/SPEC.md.

Independent of chancery's Rust code: Python 3.11+ standard library only.
Ed25519 verification (RFC 8032) is written out below from the RFC's
reference code, so the verifier needs nothing installed.

    verify.py DB [--seed HEX] [--checkpoint FILE]...

Prints one JSON object: {"ok", "entries", "head", "first_bad_seq", "failed"}
where "failed" maps each failing check's name to the sequence number it
names (null for "schema", a check of the file rather than of an entry).
Exit status 0 when every check that could run passed, else 1.
"""

import hashlib
import hmac
import json
import math
import re
import sqlite3
import struct
import sys
import tomllib

GENESIS = "0" * 64


# --- §2 canonical bytes -------------------------------------------------------

def enc_str(s):
    out = ['"']
    for ch in s:
        o = ord(ch)
        if ch == '"':
            out.append('\\"')
        elif ch == "\\":
            out.append("\\\\")
        elif o == 8:
            out.append("\\b")
        elif o == 9:
            out.append("\\t")
        elif o == 10:
            out.append("\\n")
        elif o == 12:
            out.append("\\f")
        elif o == 13:
            out.append("\\r")
        elif o < 0x20:
            out.append("\\u%04x" % o)
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def canonical(v):
    if v is None:
        return "null"
    if v is True:
        return "true"
    if v is False:
        return "false"
    if isinstance(v, int):
        if abs(v) > 2**53 - 1:
            raise ValueError("integer out of range")
        return str(v)
    if isinstance(v, float):
        raise ValueError("floats are not canonical")
    if isinstance(v, str):
        return enc_str(v)
    if isinstance(v, list):
        return "[" + ",".join(canonical(x) for x in v) + "]"
    if isinstance(v, dict):
        keys = sorted(v, key=lambda k: k.encode("utf-8"))
        return "{" + ",".join(enc_str(k) + ":" + canonical(v[k]) for k in keys) + "}"
    raise ValueError("not a JSON value")


def sha256_hex(b):
    return hashlib.sha256(b).hexdigest()


# --- §5 random streams ----------------------------------------------------------

def _rotl(x, n):
    return ((x << n) & 0xFFFFFFFF) | (x >> (32 - n))


def _qr(s, a, b, c, d):
    s[a] = (s[a] + s[b]) & 0xFFFFFFFF; s[d] = _rotl(s[d] ^ s[a], 16)
    s[c] = (s[c] + s[d]) & 0xFFFFFFFF; s[b] = _rotl(s[b] ^ s[c], 12)
    s[a] = (s[a] + s[b]) & 0xFFFFFFFF; s[d] = _rotl(s[d] ^ s[a], 8)
    s[c] = (s[c] + s[d]) & 0xFFFFFFFF; s[b] = _rotl(s[b] ^ s[c], 7)


def chacha20_block(key, block, stream):
    init = [0x61707865, 0x3320646E, 0x79622D32, 0x6B206574]
    init += list(struct.unpack("<8I", key))
    init += [block & 0xFFFFFFFF, block >> 32, stream & 0xFFFFFFFF, stream >> 32]
    s = init[:]
    for _ in range(10):
        _qr(s, 0, 4, 8, 12); _qr(s, 1, 5, 9, 13); _qr(s, 2, 6, 10, 14); _qr(s, 3, 7, 11, 15)
        _qr(s, 0, 5, 10, 15); _qr(s, 1, 6, 11, 12); _qr(s, 2, 7, 8, 13); _qr(s, 3, 4, 9, 14)
    return [(s[i] + init[i]) & 0xFFFFFFFF for i in range(16)]


def stream_id(name):
    return int.from_bytes(hashlib.sha256(b"chancery/v1/stream/" + name.encode()).digest()[:8], "little")


class Stream:
    def __init__(self, seed, name, word):
        self.seed, self.id, self.word, self._cache = seed, stream_id(name), word, (None, None)

    def next_word(self):
        b, i = divmod(self.word, 16)
        if self._cache[0] != b:
            self._cache = (b, chacha20_block(self.seed, b, self.id))
        self.word += 1
        return self._cache[1][i]

    def below(self, n):
        limit = 2**32 - (2**32 % n)
        while True:
            x = self.next_word()
            if x < limit:
                return x % n

    def shuffle(self, a):
        for i in range(len(a) - 1, 0, -1):
            j = self.below(i + 1)
            a[i], a[j] = a[j], a[i]


# --- §6 allocation ----------------------------------------------------------------

def round_half_away(x):
    """§6.4: the nearest integer to a non-negative binary64 value, halves away
    from zero (Python's round() takes halves to even: 12.5 would give 12)."""
    whole = math.floor(x)
    return whole + 1 if x - whole >= 0.5 else whole


class Protocol:
    def __init__(self, text):
        t = tomllib.loads(text)
        self.arms = [a["id"] for a in t["arms"]]
        self.ratios = [int(a.get("ratio", 1)) for a in t["arms"]]
        alloc = t["allocation"]
        self.method = alloc["method"]
        self.block_sizes = alloc.get("block_sizes", [])
        self.sites = [(s["id"], s.get("region")) for s in t.get("sites", [])]
        regions = []
        for _, r in self.sites:
            if r is not None and r not in regions:
                regions.append(r)
        fields = {}
        for f in t.get("fields", []):
            if f.get("type") == "yes_no":
                fields[f["name"]] = ["yes", "no"]
            elif f.get("type") == "category":
                fields[f["name"]] = list(f["levels"])
        raw = alloc.get("factors", []) if self.method == "minimisation" else alloc.get("strata", [])
        self.factors = []  # (name, levels, weight_milli)
        for item in raw:
            name, weight = (item, 1.0) if isinstance(item, str) else (item["field"], float(item.get("weight", 1.0)))
            levels = [s for s, _ in self.sites] if name == "site" else regions if name == "region" else fields[name]
            self.factors.append((name, levels, round_half_away(weight * 1000)))
        self.imbalance = alloc.get("imbalance", "range")
        self.p_millionths = round_half_away(float(alloc.get("p", 0)) * 1_000_000)

    def levels_of(self, site, values):
        region = dict(self.sites).get(site)
        out = []
        for name, levels, _ in self.factors:
            v = site if name == "site" else region if name == "region" else values.get(name)
            if v not in levels:
                return None
            out.append(levels.index(v))
        return out

    def label(self, levels):
        if not self.factors:
            return "all"
        return "|".join(f"{f[0]}={f[1][l]}" for f, l in zip(self.factors, levels))


def block_at(p, seed, stream, start):
    s = Stream(seed, stream, start)
    size = p.block_sizes[s.below(len(p.block_sizes))]
    total = sum(p.ratios)
    block = [i for i, r in enumerate(p.ratios) for _ in range(r * size // total)]
    s.shuffle(block)
    return block, s.word


def lcm(values):
    out = 1
    for v in values:
        a, b = out, v
        while b:
            a, b = b, a % b
        out = out // a * v
    return out


class Allocator:
    def __init__(self, p, seed):
        self.p, self.seed = p, seed
        self.cursor = {}  # stream -> (block, start, used)
        self.next_word = 0
        self.counts = [[[0] * len(p.arms) for _ in f[1]] for f in p.factors]

    def allocate(self, levels):
        """Returns (arm index, record dict without 'method' differences resolved)."""
        p = self.p
        if p.method == "permuted_blocks":
            stream = "blocks/" + p.label(levels)
            c = self.cursor.get(stream)
            if c is None:
                blk, _ = block_at(p, self.seed, stream, 0)
                no, start, used = 1, 0, 0
            else:
                blk, end = block_at(p, self.seed, stream, c[1])
                if c[2] < len(blk):
                    no, start, used = c
                else:
                    blk, _ = block_at(p, self.seed, stream, end)
                    no, start, used = c[0] + 1, end, 0
            self.cursor[stream] = (no, start, used + 1)
            rec = {"method": "permuted_blocks", "stream": stream, "block": no, "start_word": start, "position": used + 1}
            arm = blk[used]
        elif p.method == "simple":
            s = Stream(self.seed, "simple", self.next_word)
            r = s.below(sum(p.ratios))
            acc, arm = 0, 0
            for i, w in enumerate(p.ratios):
                acc += w
                if r < acc:
                    arm = i
                    break
            rec = {"method": "simple", "stream": "simple", "word_start": self.next_word, "word_end": s.word}
            self.next_word = s.word
        else:
            k_arms = len(p.arms)
            big = lcm(p.ratios)
            scale = [big // r for r in p.ratios]
            scores = []
            for k in range(k_arms):
                total = 0
                for f, (_, _, wm) in enumerate(p.factors):
                    cnt = self.counts[f][levels[f]]
                    x = [(cnt[a] + (1 if a == k else 0)) * scale[a] for a in range(k_arms)]
                    imb = max(x) - min(x) if p.imbalance == "range" else k_arms * sum(v * v for v in x) - sum(x) ** 2
                    total += wm * imb
                scores.append(total)
            best = min(scores)
            preferred = [k for k in range(k_arms) if scores[k] == best]
            others = [k for k in range(k_arms) if scores[k] != best]
            s = Stream(self.seed, "minimisation", self.next_word)
            draw_p = draw_arm = None
            chosen = preferred
            if others:
                draw_p = s.below(1_000_000)
                chosen = preferred if draw_p < p.p_millionths else others
            if len(chosen) == 1:
                arm = chosen[0]
            else:
                weights = [p.ratios[k] for k in chosen]
                draw_arm = s.below(sum(weights))
                acc, arm = 0, chosen[-1]
                for k, w in zip(chosen, weights):
                    acc += w
                    if draw_arm < acc:
                        arm = k
                        break
            rec = {
                "method": "minimisation", "stream": "minimisation", "word_start": self.next_word, "word_end": s.word,
                "scores": {p.arms[k]: str(scores[k]) for k in range(k_arms)},
                "preferred": [p.arms[k] for k in preferred], "draw_p": draw_p, "draw_arm": draw_arm,
            }
            self.next_word = s.word
        for f, l in enumerate(levels):
            self.counts[f][l][arm] += 1
        return arm, rec

    def record(self, levels, arm, rec):
        """Advances the state from a recorded allocation (used when no seed is held)."""
        if rec.get("method") == "permuted_blocks":
            self.cursor[rec["stream"]] = (rec["block"], rec["start_word"], rec["position"])
        elif "word_end" in rec:
            self.next_word = rec["word_end"]
        for f, l in enumerate(levels):
            self.counts[f][l][arm] += 1


# --- §1.1 the derived tables, replayed ------------------------------------------

# Each table's columns as §1.1 lists them, the key first.
TABLES = {
    "trial": ("singleton", "trial_id", "title", "protocol", "protocol_sha256", "seed_commitment",
              "signing_public_key", "key_origin", "created_at", "revealed_seq", "revealed_at"),
    "referrals": ("participant", "seq", "site", "status", "reasons", "screened_at", "stratum", "arm", "identity"),
    "identities": ("identity", "participant", "seq"),
    "outcomes": ("participant", "timepoint", "field", "value", "collected_on", "version", "seq"),
    "participant_status": ("participant", "status", "reason", "no_further_contact", "on_date", "seq"),
    "allocation_streams": ("stream", "block", "start_word", "used", "next_word"),
    "allocation_counts": ("factor", "level", "arm", "n"),
    "accounts": ("name", "roles", "sites", "disabled", "created_seq", "created_at", "password_seq", "seq"),
    "tokens": ("token_id", "account", "expires_at", "created_seq", "revoked_seq", "seq"),
}
# The roles an account event may name (§4).
ROLES = ("admin", "coordinator", "data_manager", "evaluator", "auditor")
ACCOUNT_EVENTS = ("account_created", "account_changed", "account_disabled", "password_set", "token_created",
                  "token_revoked")


def apply_account_event(t, seq, ts, kind, d):
    """§1.1: the accounts and tokens rows of an account or token event, in
    place; False when the event cannot be applied (replay stops there)."""
    accounts, tokens = t["accounts"], t["tokens"]
    if kind in ("account_created", "account_changed"):
        if any(r not in ROLES for r in d["roles"]):
            return False
        roles, sites = ",".join(d["roles"]), ",".join(d["sites"])
        if kind == "account_created":
            if (d["account"],) in accounts:
                return False
            accounts[(d["account"],)] = (d["account"], roles, sites, 0, seq, ts, seq, seq)
            return True
    if kind in ("account_changed", "account_disabled", "password_set"):
        a = accounts.get((d["account"],))
        if a is None:
            return False
        name, old_roles, old_sites, disabled, created_seq, created_at, password_seq, _ = a
        if kind == "account_changed":
            old_roles, old_sites = roles, sites
        elif kind == "account_disabled":
            disabled = 1
        else:
            password_seq = seq
        accounts[(name,)] = (name, old_roles, old_sites, disabled, created_seq, created_at, password_seq, seq)
        return True
    if kind == "token_created":
        if (d["account"],) not in accounts or (d["token_id"],) in tokens:
            return False
        tokens[(d["token_id"],)] = (d["token_id"], d["account"], d["expires_at"], seq, None, seq)
        return True
    if kind == "token_revoked":
        tok = tokens.get((d["token_id"],))
        if tok is None:
            return False
        tokens[(d["token_id"],)] = (*tok[:4], seq, seq)
        return True
    return False
KEY_WIDTH = {"outcomes": 3, "allocation_counts": 3}


def stratum_levels(p, label):
    """Factor level numbers from a stratum label (§6.1), or None."""
    if not p.factors:
        return [] if label == "all" else None
    parts = label.split("|")
    if len(parts) != len(p.factors):
        return None
    out = []
    for (name, levels, _), part in zip(p.factors, parts):
        n, _, level = part.partition("=")
        if n != name or level not in levels:
            return None
        out.append(levels.index(level))
    return out


def replay_tables(p, entries):
    """Every derived table's rows as §1.1 says replay writes them, keyed by
    each table's key; None when an event cannot be applied (derivation stops)."""
    t = {name: {} for name in TABLES}
    streams, next_word = {}, 0
    counts = {}
    for e in entries:
        seq, ts, d, kind = e["seq"], e["ts"], e["data"], e["type"]
        if kind == "trial_created":
            t["trial"][(1,)] = (1, d["trial"], d["title"], d["protocol"], d["protocol_sha256"], d["seed_commitment"],
                                d["signing_public_key"], d["key_origin"], ts, None, None)
        elif kind == "referral_screened":
            t["referrals"][(d["participant"],)] = (d["participant"], seq, d["site"], d["status"],
                                                   ",".join(d["reasons"]), ts, None, None, None)
        elif kind == "participant_randomised":
            t["referrals"][(d["participant"],)] = (d["participant"], seq, d["site"], "randomised", "", ts,
                                                   d["stratum"], d["arm"], d["identity"])
            t["identities"][(d["identity"],)] = (d["identity"], d["participant"], seq)
            levels, rec = stratum_levels(p, d["stratum"]), d["allocation"]
            if levels is None or d["arm"] not in p.arms:
                return None
            if rec.get("method") == "permuted_blocks":
                streams[rec["stream"]] = (rec["block"], rec["start_word"], rec["position"], 0)
            else:
                next_word = rec["word_end"]
            if p.method == "minimisation":
                for f, l in enumerate(levels):
                    key = (f, l, p.arms.index(d["arm"]))
                    counts[key] = counts.get(key, 0) + 1
        elif kind == "seed_revealed":
            row = t["trial"][(1,)]
            t["trial"][(1,)] = row[:9] + (seq, ts)
        elif kind == "outcome_recorded":
            for field, value in d["values"].items():
                key = (d["participant"], d["timepoint"], field)
                if key in t["outcomes"]:
                    return None
                t["outcomes"][key] = (*key, value, d["collected_on"], 1, seq)
        elif kind == "outcome_corrected":
            key = (d["participant"], d["timepoint"], d["field"])
            if key not in t["outcomes"]:
                return None
            old = t["outcomes"][key]
            t["outcomes"][key] = (*key, d["new_value"], old[4], old[5] + 1, seq)
        elif kind == "status_changed":
            # A request for no further contact stands until consent_renewed (§4).
            before = t["participant_status"].get((d["participant"],))
            asked = d["no_further_contact"] or (before is not None and before[3] == 1)
            t["participant_status"][(d["participant"],)] = (d["participant"], d["status"], d["reason"],
                                                             1 if asked else 0, d["on"], seq)
        elif kind == "consent_renewed":
            before = t["participant_status"].get((d["participant"],))
            if before is None or before[3] != 1:
                return None
            t["participant_status"][(d["participant"],)] = (*before[:3], 0, before[4], seq)
        elif kind in ACCOUNT_EVENTS:
            if not apply_account_event(t, seq, ts, kind, d):
                return None
    for stream, row in streams.items():
        t["allocation_streams"][(stream,)] = (stream, *row)
    if p.method in ("simple", "minimisation") and next_word > 0:
        t["allocation_streams"][(p.method,)] = (p.method, 0, 0, 0, next_word)
    for key, n in counts.items():
        t["allocation_counts"][key] = (*key, n)
    return t


def compare_tables(con, p, entries, fail):
    """Compares every derived table with its replay (§1.1), reporting as §8.3 says."""
    if con.execute("PRAGMA user_version").fetchone()[0] != SCHEMA_VERSION:
        return  # §1.1 describes the current schema's tables
    replayed = replay_tables(p, entries)
    if replayed is None:
        return
    last = entries[-1]["seq"] if entries else 0
    for name, cols in TABLES.items():
        width = KEY_WIDTH.get(name, 1)
        stored = {}
        for row in con.execute(f"SELECT {', '.join(cols)} FROM {name}"):
            stored[tuple(row[:width])] = tuple(row)
        has_seq = "seq" in cols
        seqs = []
        for key in stored.keys() | replayed[name].keys():
            a, b = stored.get(key), replayed[name].get(key)
            if a == b and all(type(x) is type(y) for x, y in zip(a, b)):
                continue
            if has_seq:
                row = b if b is not None else a
                seq = row[cols.index("seq")]
                if isinstance(seq, int):
                    seqs.append(seq)
                    continue
            seqs.append(None)
        if seqs:
            known = [x for x in seqs if x is not None]
            fail("replay", min(known) if known else 0 if name == "trial" else last)


# --- §7 checkpoints ------------------------------------------------------------------

def read_checkpoint(text):
    lines = text.split("\n")
    if len(lines) != 7 or lines[6] != "" or lines[0] != "chancery-checkpoint/1":
        raise ValueError("not a checkpoint")
    get = lambda i, k: lines[i].split(": ", 1)[1] if lines[i].startswith(k + ": ") else None
    c = {"trial": get(1, "trial"), "length": int(get(2, "log-length")), "head": get(3, "head"),
         "signature": bytes.fromhex(get(5, "signature")), "statement": "\n".join(lines[:5]) + "\n"}
    return c


# Ed25519 verification, from RFC 8032 §5.1 and its §6 reference code. Only
# verification is needed, and speed does not matter (one per checkpoint).
_P = 2**255 - 19
_L = 2**252 + 27742317777372353535851937790883648493
_D = -121665 * pow(121666, _P - 2, _P) % _P
_SQRT_M1 = pow(2, (_P - 1) // 4, _P)


def _add(a, b):
    x1, y1, z1, t1 = a
    x2, y2, z2, t2 = b
    e, f = (y1 - x1) * (y2 - x2) % _P, (y1 + x1) * (y2 + x2) % _P
    g, h = t1 * 2 * _D * t2 % _P, z1 * 2 * z2 % _P
    e, f, g, h = f - e, h - g, h + g, f + e
    return (e * f % _P, g * h % _P, f * g % _P, e * h % _P)


def _mul(k, pt):
    q = (0, 1, 1, 0)
    while k:
        if k & 1:
            q = _add(q, pt)
        pt, k = _add(pt, pt), k >> 1
    return q


def _encode(pt):
    x, y, z, _ = pt
    zi = pow(z, _P - 2, _P)
    x, y = x * zi % _P, y * zi % _P
    return (y | ((x & 1) << 255)).to_bytes(32, "little")


def _decode(b):
    """A point from its 32-byte encoding, or None (RFC 8032 §5.1.3, y ≥ p refused)."""
    if len(b) != 32:
        return None
    y = int.from_bytes(b, "little")
    sign, y = y >> 255, y & ((1 << 255) - 1)
    if y >= _P:
        return None
    x2 = (y * y - 1) * pow(_D * y * y + 1, _P - 2, _P) % _P
    if x2 == 0:
        if sign:
            return None
        x = 0
    else:
        x = pow(x2, (_P + 3) // 8, _P)
        if (x * x - x2) % _P:
            x = x * _SQRT_M1 % _P
        if (x * x - x2) % _P:
            return None
        if x & 1 != sign:
            x = _P - x
    return (x, y, 1, x * y % _P)


_B = _decode((4 * pow(5, _P - 2, _P) % _P).to_bytes(32, "little"))
_IDENTITY = _encode((0, 1, 1, 0))


def ed25519_verify(public, message, signature):
    """Strict verification: s < L, both points decode and are not of small
    order, and [s]B − [k]A encodes exactly as the signature's R."""
    if len(public) != 32 or len(signature) != 64:
        return False
    a, r = _decode(public), _decode(signature[:32])
    s = int.from_bytes(signature[32:], "little")
    if a is None or r is None or s >= _L:
        return False
    if _encode(_mul(8, a)) == _IDENTITY or _encode(_mul(8, r)) == _IDENTITY:
        return False
    k = int.from_bytes(hashlib.sha512(signature[:32] + public + message).digest(), "little") % _L
    neg_a = ((_P - a[0]) % _P, a[1], a[2], (_P - a[3]) % _P)
    return _encode(_add(_mul(s, _B), _mul(k, neg_a))) == signature[:32]


def signature_ok(c, public_hex):
    try:
        public = bytes.fromhex(public_hex)
    except ValueError:
        return False
    return ed25519_verify(public, c["statement"].encode(), c["signature"])


# --- §8 verification ---------------------------------------------------------------

# Appendix A: the schema version 5 creates, as docs/SPEC.md states it.
SCHEMA_VERSION = 5
SCHEMA_SQL = """
CREATE TABLE log (
    seq  INTEGER PRIMARY KEY,
    ts   TEXT NOT NULL,
    type TEXT NOT NULL,
    hash TEXT NOT NULL,
    body TEXT NOT NULL
);
CREATE TRIGGER log_is_append_only_update BEFORE UPDATE ON log
BEGIN SELECT RAISE(ABORT, 'the log is append-only'); END;
CREATE TRIGGER log_is_append_only_delete BEFORE DELETE ON log
BEGIN SELECT RAISE(ABORT, 'the log is append-only'); END;
CREATE TABLE trial (
    singleton          INTEGER PRIMARY KEY CHECK (singleton = 1),
    trial_id           TEXT NOT NULL,
    title              TEXT NOT NULL,
    protocol           TEXT NOT NULL,
    protocol_sha256    TEXT NOT NULL,
    seed_commitment    TEXT NOT NULL,
    signing_public_key TEXT NOT NULL,
    key_origin         TEXT NOT NULL,
    created_at         TEXT NOT NULL,
    revealed_seq       INTEGER,
    revealed_at        TEXT
);
CREATE TABLE referrals (
    participant TEXT PRIMARY KEY,
    seq         INTEGER NOT NULL,
    site        TEXT NOT NULL,
    status      TEXT NOT NULL,
    reasons     TEXT NOT NULL,
    screened_at TEXT NOT NULL,
    stratum     TEXT,
    arm         TEXT,
    identity    TEXT,
    CHECK ((status = 'randomised') = (stratum IS NOT NULL AND arm IS NOT NULL AND identity IS NOT NULL))
) WITHOUT ROWID;
CREATE TABLE identities (
    identity    TEXT PRIMARY KEY,
    participant TEXT NOT NULL,
    seq         INTEGER NOT NULL
) WITHOUT ROWID;
CREATE VIEW participants (participant, seq, site, stratum, arm, identity, randomised_at) AS
    SELECT participant, seq, site, stratum, arm, identity, screened_at FROM referrals WHERE status = 'randomised';
CREATE TABLE outcomes (
    participant  TEXT NOT NULL,
    timepoint    TEXT NOT NULL,
    field        TEXT NOT NULL,
    value        TEXT NOT NULL,
    collected_on TEXT NOT NULL,
    version      INTEGER NOT NULL,
    seq          INTEGER NOT NULL,
    PRIMARY KEY (participant, timepoint, field)
) WITHOUT ROWID;
CREATE TABLE participant_status (
    participant        TEXT PRIMARY KEY,
    status             TEXT NOT NULL,
    reason             TEXT NOT NULL,
    no_further_contact INTEGER NOT NULL,
    on_date            TEXT NOT NULL,
    seq                INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE allocation_streams (
    stream     TEXT PRIMARY KEY,
    block      INTEGER NOT NULL,
    start_word INTEGER NOT NULL,
    used       INTEGER NOT NULL,
    next_word  INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE allocation_counts (
    factor INTEGER NOT NULL,
    level  INTEGER NOT NULL,
    arm    INTEGER NOT NULL,
    n      INTEGER NOT NULL,
    PRIMARY KEY (factor, level, arm)
) WITHOUT ROWID;
CREATE TABLE accounts (
    name         TEXT PRIMARY KEY,
    roles        TEXT NOT NULL,
    sites        TEXT NOT NULL,
    disabled     INTEGER NOT NULL,
    created_seq  INTEGER NOT NULL,
    created_at   TEXT NOT NULL,
    password_seq INTEGER NOT NULL,
    seq          INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE tokens (
    token_id    TEXT PRIMARY KEY,
    account     TEXT NOT NULL,
    expires_at  TEXT NOT NULL,
    created_seq INTEGER NOT NULL,
    revoked_seq INTEGER,
    seq         INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE credentials (
    account TEXT PRIMARY KEY,
    phc     TEXT NOT NULL,
    set_seq INTEGER NOT NULL,
    set_at  TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE token_secrets (
    token_id TEXT PRIMARY KEY,
    sha256   TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE access_log (
    id      INTEGER PRIMARY KEY,
    ts      TEXT NOT NULL,
    name    TEXT NOT NULL,
    client  TEXT NOT NULL,
    outcome TEXT NOT NULL
);
CREATE INDEX access_log_by_name ON access_log (name, outcome, id);
"""
# The log's objects, alike in every schema version: all that is compared in a
# file of an older schema (with its triggers: no version has had any other).
LOG_OBJECTS = ("log", "log_is_append_only_update", "log_is_append_only_delete")


def normalise_sql(sql):
    return " ".join(w for w in re.split(r"[ \t\n\r\f]+", sql or "") if w)


def schema_objects(con):
    rows = con.execute("SELECT type, name, tbl_name, sql FROM sqlite_master WHERE name NOT LIKE 'sqlite\\_%' ESCAPE '\\'")
    return {(t, n, tbl, normalise_sql(sql)) for t, n, tbl, sql in rows}


def schema_ok(con, version):
    """§8 `schema`: sqlite_master holds exactly what appendix A creates."""
    mem = sqlite3.connect(":memory:")
    mem.executescript(SCHEMA_SQL)
    expected, found = schema_objects(mem), schema_objects(con)
    if version < SCHEMA_VERSION:
        keep = lambda o: o[1] in LOG_OBJECTS or o[0] == "trigger"
        expected, found = set(filter(keep, expected)), set(filter(keep, found))
    return expected == found


def record_follows(p, follow, d):
    """§8.1: an allocation record follows the one before it in its stream."""
    rec = d["allocation"]
    m = rec.get("method")
    if p.method == "permuted_blocks" and m == "permuted_blocks":
        b, w, pos = rec.get("block"), rec.get("start_word"), rec.get("position")
        if rec.get("stream") != "blocks/" + d["stratum"] or pos > max(p.block_sizes):
            return False
        c = follow["cursor"].get(rec["stream"])
        if c is None:
            return (b, w, pos) == (1, 0, 1)
        return (b == c[0] and w == c[1] and pos == c[2] + 1) or (
            b == c[0] + 1 and w > c[1] and pos == 1 and c[2] in p.block_sizes)
    if m == p.method and m in ("simple", "minimisation"):
        least = 1 if m == "simple" else 0
        return rec.get("stream") == m and rec.get("word_start") == follow["next_word"] and \
            rec.get("word_end") >= rec["word_start"] + least
    return False

def verify(db, seed=None, checkpoints=()):
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    failed = {}
    # A file that is not chancery's, or of a schema no release wrote, is refused.
    version = con.execute("PRAGMA user_version").fetchone()[0]
    if con.execute("PRAGMA application_id").fetchone()[0] != 0x43484E43 or not 1 <= version <= SCHEMA_VERSION:
        return {"ok": False, "entries": 0, "head": GENESIS, "first_bad_seq": None, "failed": {"schema": None}}

    def fail(check, seq):
        if check not in failed or seq < failed[check]:
            failed[check] = seq

    rows = con.execute("SELECT seq, ts, type, hash, body FROM log ORDER BY seq").fetchall()
    prev, last_ts, p, genesis = GENESIS, None, None, None
    entries, hashes = [], []
    for expect, (seq, ts, kind, h, body) in enumerate(rows):
        ok = seq == expect
        try:
            e = json.loads(body)
            ok = ok and sorted(e) == ["data", "prev", "seq", "ts", "type", "user", "v"] and canonical(e) == body
            ok = ok and e["v"] == 1 and e["seq"] == expect and e["prev"] == prev and e["ts"] == ts and e["type"] == kind
            ok = ok and sha256_hex(body.encode()) == h and (last_ts is None or e["ts"] >= last_ts)
            if ok and expect == 0:
                d = e["data"]
                ok = e["type"] == "trial_created" and sha256_hex(d["protocol"].encode()) == d["protocol_sha256"]
                p, genesis = Protocol(d["protocol"]), d
            elif ok:
                ok = e["type"] != "trial_created"
        except (ValueError, KeyError, TypeError, tomllib.TOMLDecodeError):
            ok = False
        if not ok:
            fail("chain", expect)
            break
        entries.append(e)
        hashes.append(h)
        prev, last_ts = h, e["ts"]
    head = prev

    if genesis is None:
        return {"ok": False, "entries": 0, "head": head, "first_bad_seq": 0, "failed": {"chain": 0}}

    # Seed: given, or revealed in the log; it must open the commitment.
    revealed = next((e for e in entries if e["type"] == "seed_revealed"), None)
    given = seed is not None
    if seed is None and revealed is not None:
        seed = bytes.fromhex(revealed["data"]["seed"])
    if seed is not None and sha256_hex(b"chancery/v1/seed-commitment" + seed) != genesis["seed_commitment"]:
        fail("seed_commitment", 0 if given else revealed["seq"])
        seed = None

    # Replay (derivation stops at a chain failure: entries after it are not trusted).
    alloc = Allocator(p, seed)
    follow = {"cursor": {}, "next_word": 0}  # the recorded allocation state, for §8.1
    participants, referrals, identities, outcomes, status = {}, {}, set(), {}, {}
    account_tables = {"accounts": {}, "tokens": {}}
    for e in entries:
        seq, d, kind = e["seq"], e["data"], e["type"]
        if kind in ("participant_randomised", "referral_screened"):
            if d["participant"] in referrals:
                fail("unique_participants", seq)
                break
            referrals[d["participant"]] = "randomised" if kind == "participant_randomised" else d["status"]
        if kind == "participant_randomised":
            if d["identity"] in identities:
                fail("unique_participants", seq)
                break
            identities.add(d["identity"])
            levels = p.levels_of(d["site"], d["values"])
            if levels is None or p.label(levels) != d["stratum"]:
                fail("replay", seq)
                break
            rec = d["allocation"]
            if not record_follows(p, follow, d):
                fail("replay", seq)
            if rec.get("method") == "permuted_blocks":
                follow["cursor"][rec.get("stream")] = (rec.get("block"), rec.get("start_word"), rec.get("position"))
            else:
                follow["next_word"] = rec.get("word_end")
            if seed is not None and revealed is not None and seq > revealed["seq"]:
                fail("allocations", seq)
            if seed is not None:
                arm, want = alloc.allocate(levels)
                if p.arms[arm] != d["arm"] or want != rec:
                    fail("allocations", seq)
            else:
                alloc.record(levels, p.arms.index(d["arm"]) if d["arm"] in p.arms else 0, rec)
            participants[d["participant"]] = (d["site"], d["stratum"], d["arm"], seq)
        elif kind == "outcome_recorded":
            # An optional window_reason (SPEC §4) derives nothing; an empty
            # new_value below is a correction to missing, kept as an empty value.
            if d["participant"] not in participants:
                fail("replay", seq)
            for field, value in d["values"].items():
                outcomes[(d["participant"], d["timepoint"], field)] = (value, seq)
        elif kind == "outcome_corrected":
            key = (d["participant"], d["timepoint"], d["field"])
            if key not in outcomes:
                fail("replay", seq)
            outcomes[key] = (d["new_value"], seq)
        elif kind == "status_changed":
            if d["participant"] not in participants:
                fail("replay", seq)
            # A request for no further contact stands until consent_renewed.
            asked = d["no_further_contact"] or status.get(d["participant"], (None, False, 0))[1]
            status[d["participant"]] = (d["status"], bool(asked), seq)
        elif kind == "consent_renewed":
            current = status.get(d["participant"])
            if d["participant"] not in participants or current is None or not current[1]:
                fail("replay", seq)
                break
            status[d["participant"]] = (current[0], False, seq)
        elif kind in ACCOUNT_EVENTS:
            # An account or token event that cannot be applied stops derivation (§8.3).
            if not apply_account_event(account_tables, seq, e["ts"], kind, d):
                fail("replay", seq)
                break

    # The derived tables must be exactly the replay's, every column (§1.1);
    # an older schema's are not compared (their layout is not this version's).
    if "chain" not in failed and "unique_participants" not in failed and version == SCHEMA_VERSION:
        compare_tables(con, p, entries, fail)

    for text in checkpoints:
        try:
            c = read_checkpoint(text)
        except (ValueError, IndexError, AttributeError):
            fail("checkpoints", 0)
            continue
        if c["trial"] != genesis["trial"] or not signature_ok(c, genesis["signing_public_key"]):
            fail("checkpoints", 0)
        elif c["length"] > len(entries):
            if "chain" not in failed:
                fail("checkpoints", len(entries))
        elif hashes[c["length"] - 1] != c["head"]:
            fail("checkpoints", c["length"] - 1)

    if con.execute("PRAGMA integrity_check").fetchone()[0] != "ok":
        fail("sqlite_integrity", 0)

    # A failed schema check names no entry.
    seqs = list(failed.values())
    if not schema_ok(con, version):
        failed["schema"] = None
    first = min(seqs) if seqs else None
    return {"ok": not failed, "entries": len(entries), "head": head, "first_bad_seq": first, "failed": failed}


# --- §3 key derivations (for a trial whose keys were derived from a given seed) ---

def given_identity_key(seed):
    """The identity key of a `given`-origin trial: HMAC-SHA-256 keyed by the
    identity secret SHA-256("chancery/v1/given-identity-secret" ‖ seed)."""
    secret = hashlib.sha256(b"chancery/v1/given-identity-secret" + seed).digest()
    return secret, hmac.new(secret, b"chancery/v1/identity-key", hashlib.sha256).digest()


def ed25519_public(secret):
    """RFC 8032 §5.1.5: the public key of a 32-byte secret."""
    h = hashlib.sha512(secret).digest()
    a = int.from_bytes(h[:32], "little")
    a = (a & ((1 << 254) - 8)) | (1 << 254)
    return _encode(_mul(a, _B))


def given_signing_public_key(seed):
    return ed25519_public(hashlib.sha256(b"chancery/v1/given-signing-secret" + seed).digest()).hex()


def check_log_vector(path):
    """A log vector: canonical bodies, hashes and links, the seed opening the
    commitment, the signing key derived from the seed (key_origin `given`), and
    every allocation re-derived from the seed."""
    with open(path, encoding="utf-8") as f:
        v = json.load(f)
    seed = bytes.fromhex(v["seed"])
    prev, alloc, p = GENESIS, None, None
    for e in v["entries"]:
        body = e["body"]
        entry = json.loads(body)
        assert canonical(entry) == body and sha256_hex(body.encode()) == e["hash"] and entry["prev"] == prev, path
        prev = e["hash"]
        data = entry["data"]
        if entry["type"] == "trial_created":
            p = Protocol(data["protocol"])
            assert sha256_hex(data["protocol"].encode()) == data["protocol_sha256"], path
            assert sha256_hex(b"chancery/v1/seed-commitment" + seed) == data["seed_commitment"], path
            assert data["key_origin"] == "given" and data["signing_public_key"] == given_signing_public_key(seed), path
            alloc = Allocator(p, seed)
        elif entry["type"] == "participant_randomised":
            levels = p.levels_of(data["site"], data["values"])
            assert p.label(levels) == data["stratum"], (path, entry["seq"])
            arm, rec = alloc.allocate(levels)
            assert p.arms[arm] == data["arm"] and rec == data["allocation"], (path, entry["seq"])


def check_further_vectors(d):
    """The vectors added in §9 for simple randomisation, unequal ratios, region,
    the variance measure, rounding ties, the rejection step and the keys."""
    import os
    for name in ("simple.json", "blocks-2to1-region.json", "minimisation-2to1to1-variance.json"):
        check_log_vector(os.path.join(d, name))
    with open(os.path.join(d, "draws.json"), encoding="utf-8") as f:
        v = json.load(f)
    seed = bytes.fromhex(v["seed"])
    for draw in v["draws"]:
        s = Stream(seed, draw["stream"], draw["start_word"])
        assert s.below(draw["n"]) == draw["value"] and s.word == draw["word_after"], draw
    with open(os.path.join(d, "keys.json"), encoding="utf-8") as f:
        k = json.load(f)
    seed = bytes.fromhex(k["seed"])
    secret, key = given_identity_key(seed)
    assert secret.hex() == k["identity_secret"] and key.hex() == k["identity_key"], "identity key"
    assert hmac.new(key, k["nhs_number"].encode(), hashlib.sha256).hexdigest() == k["identity"], "identity hash"
    signing = hashlib.sha256(b"chancery/v1/given-signing-secret" + seed).digest()
    assert signing.hex() == k["signing_secret"], "signing secret"
    assert ed25519_public(signing).hex() == k["signing_public_key"] == given_signing_public_key(seed), "public key"
    assert sha256_hex(b"chancery/v1/seed-commitment" + seed) == k["seed_commitment"], "seed commitment"
    # RFC 8032 §7.1 TEST 1: the public key from the secret.
    assert ed25519_public(bytes.fromhex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")).hex() == \
        "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a", "RFC 8032 public key"
    # §6.4's rounding: halves away from zero on the binary64 product.
    assert [round_half_away(float(w) * 1000) for w in ("0.0125", "0.5005", "1.0005")] == [13, 500, 1001]


def check_accounts_vector(path):
    """The account vector (§9): canonical bodies, hashes and links, and the
    accounts and tokens rows its replay gives (§1.1) exactly those listed."""
    with open(path, encoding="utf-8") as f:
        v = json.load(f)
    prev = GENESIS
    t = {"accounts": {}, "tokens": {}}
    for e in v["entries"]:
        body = e["body"]
        entry = json.loads(body)
        assert canonical(entry) == body and sha256_hex(body.encode()) == e["hash"] and entry["prev"] == prev, path
        prev = e["hash"]
        if entry["type"] in ACCOUNT_EVENTS:
            assert apply_account_event(t, entry["seq"], entry["ts"], entry["type"], entry["data"]), (path, entry["seq"])
            # No event carries a password, a hash or a token.
            assert not any(k in entry["data"] for k in ("password", "phc", "hash", "token", "sha256")), entry["seq"]
    assert sorted(t["accounts"].values()) == [tuple(r) for r in v["accounts"]], "accounts rows"
    assert sorted(t["tokens"].values()) == [tuple(r) for r in v["tokens"]], "tokens rows"


def check_vectors(d):
    """Checks the vectors in directory d against this implementation of the spec."""
    import os
    with open(os.path.join(d, "streams.json"), encoding="utf-8") as f:
        v = json.load(f)
    seed = bytes.fromhex(v["seed"])
    for st in v["streams"]:
        assert str(stream_id(st["name"])) == st["id"], st["name"]
        s = Stream(seed, st["name"], 0)
        assert [s.next_word() for _ in st["first_words"]] == st["first_words"], st["name"]
        s = Stream(seed, st["name"], 0)
        for b in st["below_from_start"]:
            assert s.below(b["n"]) == b["value"] and s.word == b["word_after"], (st["name"], b)
    for name in ("log.json", "minimisation.json"):
        with open(os.path.join(d, name), encoding="utf-8") as f:
            v = json.load(f)
        seed = bytes.fromhex(v["seed"])
        prev, alloc = GENESIS, None
        for e in v["entries"]:
            body = e["body"]
            entry = json.loads(body)
            assert canonical(entry) == body and sha256_hex(body.encode()) == e["hash"] and entry["prev"] == prev, name
            prev = e["hash"]
            if entry["type"] == "trial_created":
                p = Protocol(entry["data"]["protocol"])
                assert sha256_hex(b"chancery/v1/seed-commitment" + seed) == entry["data"]["seed_commitment"]
                alloc = Allocator(p, seed)
            elif entry["type"] == "participant_randomised":
                data = entry["data"]
                arm, rec = alloc.allocate(p.levels_of(data["site"], data["values"]))
                assert p.arms[arm] == data["arm"] and rec == data["allocation"], (name, entry["seq"])
    # RFC 8032 §7.1, TEST 1 and TEST 2: the Ed25519 code above against the RFC.
    for public, message, signature in (
        ("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a", "",
         "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"),
        ("3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c", "72",
         "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00"),
    ):
        public, message, signature = bytes.fromhex(public), bytes.fromhex(message), bytes.fromhex(signature)
        assert ed25519_verify(public, message, signature), "RFC 8032 vector"
        assert not ed25519_verify(public, message + b"!", signature), "RFC 8032 vector, altered message"
    with open(os.path.join(d, "checkpoint.txt"), encoding="utf-8", newline="") as f:
        c = read_checkpoint(f.read())
    with open(os.path.join(d, "checkpoint.json"), encoding="utf-8") as f:
        public = json.load(f)["signing_public_key"]
    assert signature_ok(c, public), "checkpoint signature"
    with open(os.path.join(d, "log.json"), encoding="utf-8") as f:
        hashes = [e["hash"] for e in json.load(f)["entries"]]
    assert c["length"] == len(hashes) and c["head"] == hashes[-1], "checkpoint head"
    with open(os.path.join(d, "log.json"), encoding="utf-8") as f:
        genesis = json.loads(json.load(f)["entries"][0]["body"])["data"]
    with open(os.path.join(d, "log.json"), encoding="utf-8") as f:
        seed = bytes.fromhex(json.load(f)["seed"])
    assert public == genesis["signing_public_key"] == given_signing_public_key(seed), "checkpoint key from the seed"
    if os.path.exists(os.path.join(d, "keys.json")):
        check_further_vectors(d)
    if os.path.exists(os.path.join(d, "accounts.json")):
        check_accounts_vector(os.path.join(d, "accounts.json"))
    print("vectors ok")


def main(argv):
    if argv[:1] == ["--vectors"]:
        check_vectors(argv[1])
        return 0
    db, seed, cps = None, None, []
    i = 0
    while i < len(argv):
        if argv[i] == "--seed":
            seed = bytes.fromhex(argv[i + 1]); i += 2
        elif argv[i] == "--checkpoint":
            with open(argv[i + 1], encoding="utf-8", newline="") as f:
                cps.append(f.read())
            i += 2
        else:
            db = argv[i]; i += 1
    result = verify(db, seed, cps)
    print(json.dumps(result, sort_keys=True))
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
