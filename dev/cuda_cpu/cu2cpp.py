#!/usr/bin/env python3
"""CPU backend: the one mechanical step between a CUDA source and g++. Rewrites
  kernel<<<grid, block[, smem[, stream]]>>>(args)  ->  ::cuda_cpu::launch(kernel, "kernel", grid, block...)(args)
  extern __shared__ T name[];                      ->  T* name = (T*)::cuda_cpu::dynamic_smem();
  __shared__ T a[..], b[..];                       ->  the same declarations, each followed (on the same line) by
                                                       CUDA_CPU_SHARED_POISON(a): NaN-filled once per block
and nothing else; a #line directive keeps file names and line numbers (errors, __FILE__) those of the source.
Usage: cu2cpp.py SRC OUT  (SRC: the .cu or CUDA header as nvcc reads it)."""
import re
import sys

LAUNCH = re.compile(r"([A-Za-z_][\w:]*(?:\s*<[^<>;()]*>)?)\s*<<<(.*?)>>>", re.S)
DYN_SMEM = re.compile(r"extern\s+__shared__\s+(?:__align__\s*\(\s*\d+\s*\)\s*)?([A-Za-z_][\w:<>, ]*?)\s*"
                      r"(?:__align__\s*\(\s*\d+\s*\)\s*)?([A-Za-z_]\w*)\s*\[\s*\]\s*;")


STATIC_SMEM = re.compile(r"(?<![\w])(?<!extern )__shared__[ \t]+([A-Za-z_][\w:<>]*(?:[ \t]*\*)?)[ \t]+([^;()\n]+);")


def split_top(decls):
    """declarators separated by commas outside brackets"""
    out, depth, cur = [], 0, ""
    for ch in decls:
        depth += ch in "[<(" and 1 or 0
        depth -= ch in "]>)" and 1 or 0
        if ch == "," and depth == 0:
            out.append(cur.strip())
            cur = ""
        else:
            cur += ch
    out.append(cur.strip())
    return out


def poison_static(m):
    typ, names = m.group(1), []
    decls = split_top(m.group(2))
    parts = []
    for d in decls:
        name = re.match(r"\**\s*([A-Za-z_]\w*)", d)
        if name is None:
            sys.exit("cu2cpp: cannot read the __shared__ declarator '%s'" % d)
        parts.append("__shared__ %s %s;" % (typ, d))
        names.append(name.group(1))
    return " ".join(parts) + "".join(" CUDA_CPU_SHARED_POISON(%s);" % n for n in names)


def rewrite(text):
    def launch(m):
        name = re.sub(r"\s+", "", m.group(1))
        return '::cuda_cpu::launch(%s, "%s", %s)' % (m.group(1), name, m.group(2))

    text = LAUNCH.sub(launch, text)
    text = STATIC_SMEM.sub(poison_static, text)
    return DYN_SMEM.sub(lambda m: "%s* %s = (%s*)::cuda_cpu::dynamic_smem();" % (m.group(1), m.group(2), m.group(1)),
                        text)


def main():
    if len(sys.argv) != 3:
        sys.exit("usage: cu2cpp.py SRC OUT")
    src, out = sys.argv[1], sys.argv[2]
    try:
        with open(src, encoding="utf-8") as f:
            text = f.read()
    except OSError as e:
        sys.exit("cu2cpp: cannot read %s: %s" % (src, e.strerror))
    body = rewrite(text)
    if "<<<" in body:
        line = body[: body.index("<<<")].count("\n") + 1
        sys.exit("cu2cpp: %s:%d: a kernel launch this rewriter does not understand" % (src, line))
    with open(out, "w", encoding="utf-8") as f:
        f.write('#line 1 "%s"\n' % src)
        f.write(body)


if __name__ == "__main__":
    main()
