"""
Minimal reader for R's serialization format (XDR, versions 2 and 3) and for
R lazy-load databases (.rdx index + .rdb object store), standard library only.

Supported: NILVALUE, SYMSXP, LISTSXP (pairlists, used for attributes),
LANGSXP/CLOSXP/PROMSXP/DOTSXP (read structurally), ENVSXP, REFSXP, CHARSXP
(UTF-8 / latin1 / bytes / ASCII, NA), LGLSXP, INTSXP, REALSXP, CPLXSXP,
STRSXP, VECSXP, EXPRSXP, RAWSXP, the special environment markers, and the
ALTREP classes R writes for data (compact_intseq, compact_realseq,
wrap_*, deferred_string). Attributes are kept as a dict on the result.
Not supported (error): byte code (BCODESXP), S4 slots, external pointers.

Results:
  character vector -> RVector(list of str or None for NA)
  integer / logical / double / raw vector -> RVector(list)
  generic vector (list) -> RVector(list of items)
  pairlist -> RPairlist(list of (tag, value))
  symbol -> RSymbol(name)
Every RVector has .attrs (dict name -> value).
"""

import gzip
import lzma
import bz2
import struct
import zlib

NILSXP, SYMSXP, LISTSXP, CLOSXP, ENVSXP, PROMSXP, LANGSXP = 0, 1, 2, 3, 4, 5, 6
SPECIALSXP, BUILTINSXP, CHARSXP, LGLSXP = 7, 8, 9, 10
INTSXP, REALSXP, CPLXSXP, STRSXP, DOTSXP = 13, 14, 15, 16, 17
VECSXP, EXPRSXP, BCODESXP, EXTPTRSXP, WEAKREFSXP, RAWSXP, S4SXP = 19, 20, 21, 22, 23, 24, 25
ALTREP_SXP = 238
ATTRLISTSXP, ATTRLANGSXP = 239, 240
BASEENV_SXP, EMPTYENV_SXP = 241, 242
GENERICREFSXP, CLASSREFSXP, PERSISTSXP = 245, 246, 247
PACKAGESXP, NAMESPACESXP, BASENAMESPACE_SXP = 248, 249, 250
MISSINGARG_SXP, UNBOUNDVALUE_SXP, GLOBALENV_SXP, NILVALUE_SXP, REFSXP = 251, 252, 253, 254, 255

NA_INTEGER = -2147483648


class RFormatError(Exception):
    pass


class RSymbol:
    def __init__(self, name):
        self.name = name

    def __repr__(self):
        return "RSymbol(%r)" % self.name


class RVector:
    def __init__(self, sexptype, data, attrs=None):
        self.type = sexptype
        self.data = data
        self.attrs = attrs or {}

    def __len__(self):
        return len(self.data)

    def __repr__(self):
        return "RVector(type=%d, n=%d, attrs=%s)" % (self.type, len(self.data), list(self.attrs))


class RPairlist:
    def __init__(self, items, sexptype=LISTSXP):
        self.items = items  # list of (tag or None, value)
        self.type = sexptype

    def as_dict(self):
        return {tag: val for tag, val in self.items}


class REnv:
    def __init__(self, kind):
        self.kind = kind
        self.frame = None

    def __repr__(self):
        return "REnv(%s)" % self.kind


class RSpecial:
    def __init__(self, kind, payload=None):
        self.kind = kind
        self.payload = payload

    def __repr__(self):
        return "RSpecial(%s)" % self.kind


def _pairlist_to_attrs(pl):
    if pl is None:
        return {}
    if not isinstance(pl, RPairlist):
        raise RFormatError("attributes are not a pairlist")
    out = {}
    for tag, val in pl.items:
        out[tag if tag is not None else ""] = val
    return out


class _Reader:
    def __init__(self, buf):
        self.buf = buf
        self.pos = 0
        self.refs = []

    def _need(self, n):
        if self.pos + n > len(self.buf):
            raise RFormatError("truncated R serialization at byte %d" % self.pos)

    def int(self):
        self._need(4)
        v = struct.unpack_from(">i", self.buf, self.pos)[0]
        self.pos += 4
        return v

    def ints(self, n):
        self._need(4 * n)
        v = struct.unpack_from(">%di" % n, self.buf, self.pos)
        self.pos += 4 * n
        return list(v)

    def doubles(self, n):
        self._need(8 * n)
        v = struct.unpack_from(">%dd" % n, self.buf, self.pos)
        self.pos += 8 * n
        return list(v)

    def raw(self, n):
        self._need(n)
        v = self.buf[self.pos:self.pos + n]
        self.pos += n
        return bytes(v)

    def length(self):
        n = self.int()
        if n == -1:
            hi, lo = self.int(), self.int()
            n = (hi << 32) | (lo & 0xFFFFFFFF)
        if n < 0:
            raise RFormatError("negative vector length %d" % n)
        return n

    def header(self):
        fmt = self.raw(2)
        if fmt != b"X\n":
            raise RFormatError("unsupported R serialization format %r (only XDR 'X\\n')" % fmt)
        version = self.int()
        self.int()  # writer R version
        self.int()  # minimal reader R version
        if version == 3:
            nelen = self.int()
            self.raw(nelen)  # native encoding name
        elif version != 2:
            raise RFormatError("unsupported R serialization version %d" % version)
        return version

    def charsxp(self, levels):
        n = self.int()
        if n == -1:
            return None  # NA_STRING
        b = self.raw(n)
        if levels & (1 << 2):  # LATIN1
            return b.decode("latin-1")
        if levels & (1 << 1):  # BYTES
            return b.decode("latin-1")
        try:
            return b.decode("utf-8")  # UTF8, ASCII or native (assumed UTF-8)
        except UnicodeDecodeError:
            return b.decode("latin-1")

    def item(self):
        flags = self.int()
        t = flags & 0xFF
        levels = flags >> 12
        has_attr = bool(flags & (1 << 9))
        has_tag = bool(flags & (1 << 10))

        if t == NILVALUE_SXP:
            return None
        if t == EMPTYENV_SXP:
            return REnv("empty")
        if t == BASEENV_SXP:
            return REnv("base")
        if t == GLOBALENV_SXP:
            return REnv("global")
        if t == UNBOUNDVALUE_SXP:
            return RSpecial("unbound")
        if t == MISSINGARG_SXP:
            return RSpecial("missingarg")
        if t == BASENAMESPACE_SXP:
            return REnv("basenamespace")
        if t == REFSXP:
            idx = flags >> 8
            if idx == 0:
                idx = self.int()
            if idx < 1 or idx > len(self.refs):
                raise RFormatError("bad reference index %d" % idx)
            return self.refs[idx - 1]
        if t == PERSISTSXP:
            if self.int() != 0:
                raise RFormatError("bad PERSISTSXP string vector")
            s = [self.item() for _ in range(self.length())]
            obj = RSpecial("persist", s)
            self.refs.append(obj)
            return obj
        if t == SYMSXP:
            name = self.item()
            if not isinstance(name, str):
                raise RFormatError("symbol name is not a CHARSXP")
            sym = RSymbol(name)
            self.refs.append(sym)
            return sym
        if t in (PACKAGESXP, NAMESPACESXP):
            self.int()  # 0
            n = self.int()
            info = [self.item() for _ in range(n)]  # CHARSXPs
            env = REnv("namespace" if t == NAMESPACESXP else "package")
            env.frame = info
            self.refs.append(env)
            return env
        if t == ENVSXP:
            self.int()  # locked
            env = REnv("env")
            self.refs.append(env)
            enclos = self.item()
            frame = self.item()
            hashtab = self.item()
            attrs = self.item()
            env.frame = (enclos, frame, hashtab, attrs)
            return env
        if t in (LISTSXP, LANGSXP, CLOSXP, PROMSXP, DOTSXP, ATTRLANGSXP, ATTRLISTSXP):
            items = []
            attrs_first = None
            cur_t, cur_attr, cur_tag = t, has_attr, has_tag
            # Iterate along the CDR chain instead of recursing.
            while True:
                a = self.item() if cur_attr else None
                if attrs_first is None and a is not None:
                    attrs_first = a
                tag = self.item() if cur_tag else None
                if isinstance(tag, RSymbol):
                    tag = tag.name
                car = self.item()
                items.append((tag, car))
                nflags = self.int()
                nt = nflags & 0xFF
                if nt == NILVALUE_SXP:
                    break
                if nt in (LISTSXP, LANGSXP, DOTSXP, ATTRLISTSXP, ATTRLANGSXP) and cur_t == nt:
                    cur_attr = bool(nflags & (1 << 9))
                    cur_tag = bool(nflags & (1 << 10))
                    continue
                # Non-list CDR: push back the flags and read it as an item.
                self.pos -= 4
                rest = self.item()
                items.append((".cdr", rest))
                break
            pl = RPairlist(items, t)
            pl.attrs = _pairlist_to_attrs(attrs_first) if attrs_first is not None else {}
            return pl
        if t == CHARSXP:
            return self.charsxp(levels)
        if t in (LGLSXP, INTSXP):
            n = self.length()
            data = self.ints(n)
            data = [None if v == NA_INTEGER else v for v in data]
            if t == LGLSXP:
                data = [None if v is None else bool(v) for v in data]
            return self._finish(RVector(t, data), has_attr)
        if t == REALSXP:
            n = self.length()
            return self._finish(RVector(t, self.doubles(n)), has_attr)
        if t == CPLXSXP:
            n = self.length()
            d = self.doubles(2 * n)
            return self._finish(RVector(t, [complex(d[2 * i], d[2 * i + 1]) for i in range(n)]), has_attr)
        if t == RAWSXP:
            n = self.length()
            return self._finish(RVector(t, self.raw(n)), has_attr)
        if t == STRSXP:
            n = self.length()
            data = []
            for _ in range(n):
                cflags = self.int()
                if cflags & 0xFF != CHARSXP:
                    raise RFormatError("STRSXP element of type %d, expected CHARSXP" % (cflags & 0xFF))
                data.append(self.charsxp(cflags >> 12))
            return self._finish(RVector(t, data), has_attr)
        if t in (VECSXP, EXPRSXP):
            n = self.length()
            return self._finish(RVector(t, [self.item() for _ in range(n)]), has_attr)
        if t == S4SXP:
            return self._finish(RVector(t, []), has_attr)
        if t == ALTREP_SXP:
            info = self.item()
            state = self.item()
            attr = self.item()
            return self._altrep(info, state, attr)
        raise RFormatError("unsupported R SEXP type %d" % t)

    def _finish(self, vec, has_attr):
        if has_attr:
            vec.attrs = _pairlist_to_attrs(self.item())
        return vec

    def _altrep(self, info, state, attr):
        if not isinstance(info, RPairlist) or not info.items or not isinstance(info.items[0][1], RSymbol):
            raise RFormatError("malformed ALTREP class info")
        cls = info.items[0][1].name
        if cls == "compact_intseq":
            n, n1, inc = state.data[:3]
            vec = RVector(INTSXP, [int(n1 + i * inc) for i in range(int(n))])
        elif cls == "compact_realseq":
            n, n1, inc = state.data[:3]
            vec = RVector(REALSXP, [n1 + i * inc for i in range(int(n))])
        elif cls.startswith("wrap_"):
            # state: list(x, meta)
            inner = state.items[0][1] if isinstance(state, RPairlist) else state.data[0]
            vec = RVector(inner.type, inner.data, dict(inner.attrs))
        elif cls == "deferred_string":
            # state: pairlist(arg, info); arg is the original int/real vector
            arg = state.items[0][1]
            vec = RVector(STRSXP, [None if v is None else _deparse_num(v) for v in arg.data])
        else:
            raise RFormatError("unsupported ALTREP class %s" % cls)
        if attr is not None:
            vec.attrs = _pairlist_to_attrs(attr)
        return vec


def _deparse_num(v):
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v)


def unserialize(buf):
    """Parse one serialized R object (XDR) from bytes."""
    r = _Reader(buf)
    r.header()
    obj = r.item()
    return obj


def read_rds(path):
    """Read an .rds file (gzip, bzip2, xz or uncompressed XDR)."""
    with open(path, "rb") as f:
        raw = f.read()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    elif raw[:3] == b"BZh":
        raw = bz2.decompress(raw)
    elif raw[:6] == b"\xfd7zXZ\x00":
        raw = lzma.decompress(raw)
    return unserialize(raw)


def _rdb_decompress(blob, where):
    if len(blob) < 5:
        raise RFormatError("%s: lazy-load record too short" % where)
    outlen = struct.unpack(">I", blob[:4])[0]
    kind = blob[4:5]
    if kind == b"Z":
        data = lzma.decompress(blob[5:])
    elif kind == b"2":
        data = bz2.decompress(blob[5:])
    elif kind == b"0":
        data = blob[5:]
    else:
        data = zlib.decompress(blob[4:])
    if len(data) != outlen:
        raise RFormatError("%s: decompressed %d bytes, header says %d" % (where, len(data), outlen))
    return data


def read_lazyload_db(base):
    """Read all variables of the lazy-load database base.rdx / base.rdb.

    Returns dict name -> unserialized object."""
    index = read_rds(base + ".rdx")
    if not isinstance(index, RVector) or "names" not in index.attrs:
        raise RFormatError("%s.rdx: index is not a named list" % base)
    parts = dict(zip(index.attrs["names"].data, index.data))
    variables = parts.get("variables")
    if variables is None:
        raise RFormatError("%s.rdx: index has no 'variables' entry" % base)
    names = variables.attrs["names"].data
    with open(base + ".rdb", "rb") as f:
        rdb = f.read()
    out = {}
    for name, pos in zip(names, variables.data):
        off, ln = int(pos.data[0]), int(pos.data[1])
        if off < 0 or ln < 0 or off + ln > len(rdb):
            raise RFormatError("%s.rdb: object %s out of range" % (base, name))
        data = _rdb_decompress(rdb[off:off + ln], "%s.rdb[%s]" % (base, name))
        out[name] = unserialize(data)
    return out
