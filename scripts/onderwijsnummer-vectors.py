#!/usr/bin/env python3
"""Checks the onderwijsnummer test vectors of src/domain.rs against python-stdnum, the reference implementation
DOMAIN.md names (`pip install python-stdnum`), and with `--draw N` prints N fresh valid and invalid numbers.

    python3 scripts/onderwijsnummer-vectors.py [--draw 12]
"""
import pathlib
import random
import re
import sys

from stdnum.exceptions import InvalidChecksum, InvalidFormat, InvalidLength, ValidationError
from stdnum.nl import bsn, onderwijsnummer

EXPECTED = {"Checksum": InvalidChecksum, "OnderwijsnummerPrefix": InvalidFormat, "NotNineDigits": InvalidLength}


def reason(n):
    try:
        onderwijsnummer.validate(n)
        return None
    except ValidationError as e:
        return type(e)


def main():
    source = (pathlib.Path(__file__).parent.parent / "src/domain.rs").read_text()
    valid = re.search(r"ONDERWIJSNUMMERS_VALID: \[&str; \d+\] = \[(.*?)\];", source, re.S).group(1)
    invalid = re.search(r"ONDERWIJSNUMMERS_INVALID: .*? = \[(.*?)\n    \];", source, re.S).group(1)
    valid = re.findall(r'"(\d+)"', valid)
    invalid = re.findall(r'\("(\d+)", SubjectError::(\w+), (true|false)\)', invalid)
    bad = 0
    for n in valid:
        if reason(n) is not None:
            print(f"{n}: expected valid, python-stdnum says {reason(n).__name__}")
            bad += 1
    for n, rule, is_bsn in invalid:
        got = reason(n)
        # python-stdnum pads a number of fewer than 9 digits with zeros, which then fails the prefix.
        ok = got is EXPECTED[rule] or (rule == "NotNineDigits" and len(n) < 9 and got is InvalidFormat)
        if not ok or bsn.is_valid(n) != (is_bsn == "true"):
            print(f"{n}: expected {rule} (BSN: {is_bsn}), python-stdnum says {got and got.__name__}")
            bad += 1
    print(f"{len(valid)} valid, {len(invalid)} invalid vectors:", "all agree with python-stdnum" if bad == 0 else f"{bad} disagree")
    if "--draw" in sys.argv:
        count = int(sys.argv[sys.argv.index("--draw") + 1])
        drawn = {None: [], InvalidChecksum: []}
        while any(len(v) < count for v in drawn.values()):
            n = "10" + "".join(random.choice("0123456789") for _ in range(7))
            if len(drawn.get(reason(n), [0] * count)) < count:
                drawn[reason(n)].append(f"{n} (remainder {bsn.checksum(n)})")
        print("valid:", *drawn[None])
        print("wrong remainder:", *drawn[InvalidChecksum])
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
