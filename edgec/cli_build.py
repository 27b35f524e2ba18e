"""``edgec build``: the click command; the work lives in :mod:`edgec.build`."""

from __future__ import annotations

import json
import os

import click


@click.command()
@click.argument("config", default="edgec.toml", type=click.Path(dir_okay=False))
@click.option("-o", "--output", "out_dir", default=None, type=click.Path(file_okay=False),
              help="Where artifacts and build.json go [default: build/edgec].")
@click.option("--only", multiple=True, metavar="NAME",
              help="Build only this model (or MODEL/TARGET cell); repeatable.")
@click.option("--cache-dir", default=None, type=click.Path(file_okay=False),
              help="Artifact cache [default: the config's cache_dir, else .edgec-cache].")
@click.option("--jobs", "-j", default=None, type=click.IntRange(1),
              help="Cells built at once, each in its own process [default: min(2, CPUs)]; 1 builds in-process.")
@click.option("--json", "as_json", is_flag=True, help="Print build.json instead of the table.")
def build(config, out_dir, only, cache_dir, jobs, as_json):
    """Build every model x target in CONFIG (default edgec.toml) into DIR/<model>/<target>/model.edgec.

    Unchanged cells are copied from the cache. Exit code 1 when any cell fails.
    """
    from edgec.build import DEFAULT_CACHE, DEFAULT_OUT, build as run_build
    from edgec.build_config import load_config

    cfg = load_config(config)
    summary = run_build(cfg, out_dir or DEFAULT_OUT, cache_dir or cfg.cache_dir or DEFAULT_CACHE,
                        only=tuple(only), jobs=jobs)
    if as_json:
        click.echo(json.dumps(summary.to_json(), indent=2))
    else:
        click.echo(summary.text())
        click.echo(f"wrote {os.path.join(out_dir or DEFAULT_OUT, 'build.json')}")
    failure = summary.failure()
    if failure is not None:
        raise failure
