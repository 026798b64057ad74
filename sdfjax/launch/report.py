r"""Writes the results tables and pictures of a run from its files (`make results` ends with it).

    python -m sdfjax.launch.report --config=configs/chairs256.py:cpu --workdir=runs/chairs256_cpu \
        --readme=docs/results.md --pictures=docs/results

Writes <workdir>/results/results.md; with --readme, also that markdown file between its
<!-- results:begin --> and <!-- results:end --> markers; with --headline, a few headline
medians between that file's <!-- headline:begin --> and <!-- headline:end --> markers;
--pictures: where the PNGs go.
"""

from absl import flags

from sdfjax import report
from sdfjax.launch import common


def main(argv):
    del argv
    f = flags.FLAGS
    common.quiet_logging()
    with common.exit_on():
        markdown = report.write_report(f.config, f.workdir, f.pictures or None)
        if f.readme:
            report.update_readme(f.readme, markdown)
        if f.headline:
            report.update_readme(f.headline, report.headline(f.workdir), report.HEADLINE_BEGIN, report.HEADLINE_END)
    print(markdown)


if __name__ == "__main__":
    flags.DEFINE_string("readme", "", "A markdown file whose results markers get the tables.")
    flags.DEFINE_string("pictures", "", "Folder for the PNGs (default: <workdir>/results).")
    flags.DEFINE_string("headline", "", "A markdown file (the README) whose headline markers get the headline table.")
    common.run_on_trained(main, "The run folder `make results` wrote.")
