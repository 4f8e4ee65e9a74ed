"""Started under torchrun by tests/test_parallel.py: `python tests/fsdp_greedy.py DATA OUT`.

Trains a tiny tied-weights model with FSDP through gptcore's Trainer, then, before the run finishes (and
consolidates its weights into OUT/ckpt.pt), has the live sharded model greedily continue end-of-text on
every rank (each forward pass all-gathers the shards) and scores a validation batch; rank 0 writes the
text to OUT/live_greedy.txt and the batch and its logits to OUT/live_logits.pt.
"""

import sys
from pathlib import Path

import torch

from gptcore.config import GPTConfig, TrainConfig
from gptcore.data import open_dataset
from gptcore.train import RunDir, Trainer, _claim, close_distributed, exit_process, init_distributed

TOKENS = 12

data, out = sys.argv[1], Path(sys.argv[2])
dataset = open_dataset(data)
model = GPTConfig(vocab_size=dataset.vocab_size, ctx=32, n_layer=2, n_head=2, d_model=64, tie_weights=True)
cfg = TrainConfig(model=model, data=data, out=str(out), batch_size=4, max_steps=6, warmup=2, eval_every=3,
                  eval_batches=3, sample_tokens=0, device="cpu", dtype="fp32", threads=1, progress=False,
                  parallel="fsdp")
device = torch.device("cpu")
d = init_distributed(device.type)
run = RunDir(out)
_claim(run, cfg, d)
trainer = Trainer(cfg, dataset, device, d, run, print if d.main else (lambda msg: None))
status = trainer.run_steps(None)
start = torch.full((1, 1), dataset.tokenizer.eot_id, dtype=torch.long)
trainer.raw_model.eval()
with torch.no_grad():
    ids = trainer.raw_model.generate(start, TOKENS, temperature=0)[0, 1:].tolist()
    batch = torch.from_numpy(dataset.val[: 2 * cfg.model.ctx].astype("int64")).view(2, -1)
    logits = trainer.raw_model(batch)
trainer.raw_model.train()
if d.main:
    (out / "live_greedy.txt").write_text(dataset.tokenizer.decode(ids))
    torch.save({"batch": batch, "logits": logits}, out / "live_logits.pt")
trainer.finish(status)
close_distributed()
exit_process(0)  # no interpreter teardown under gloo (see gptcore.train.exit_process)
