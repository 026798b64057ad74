r"""Sketch-based retrieval with the trained Siamese encoder: Recall@1 / Recall@5 at object level.

    python -m sdfjax.launch.eval_siamese --config=configs/chair16.py:cpu --workdir=runs/chair16_cpu
    python -m sdfjax.launch.eval_siamese --config=configs/chair16.py:cpu --workdir=runs/chair16_cpu \
        --config.siamese.index_split=train,val      # a harder index: 20 shapes instead of 4

Every normal map (all views) of `config.siamese.index_split` forms the index; every sketch
of `config.siamese.query_split` is a query. Writes <workdir>/siamese/eval/<timestamp>/:
retrieval.json and retrieval.png (queries with their top 5; wrong shapes tinted red).
"""

from sdfjax.evaluators import retrieval
from sdfjax.launch import common


def report(result: dict) -> None:
    print(retrieval.format_recall(result))
    print(f"results and picture in {result['out_dir']}")


if __name__ == "__main__":
    common.run_job(retrieval.evaluate_retrieval, report,
                   "Run folder holding siamese/checkpoints (train_siamese's --workdir).")
