"""The teaching-case loop of shared/bench/torch_baseline.py, runnable on CPU or GPU.

y = 3x + 2 + 0.1·noise, 1000 points, full-batch SGD at lr 0.01, 1000 steps; prints JSON
with the baseline's keys. Usage: python3 torch_linreg.py [cpu|cuda] [threads]
"""
import json, sys, time, warnings
warnings.filterwarnings("ignore")
import torch

dev = sys.argv[1] if len(sys.argv) > 1 else "cpu"
if len(sys.argv) > 2:
    torch.set_num_threads(int(sys.argv[2]))
sync = torch.cuda.synchronize if dev.startswith("cuda") else (lambda: None)
torch.manual_seed(0)
x = torch.randn(1000, 1, device=dev); y = 3 * x + 2 + 0.1 * torch.randn_like(x)
lin = torch.nn.Linear(1, 1).to(dev); opt = torch.optim.SGD(lin.parameters(), lr=0.01)
def run(steps):
    for _ in range(steps):
        loss = torch.nn.functional.mse_loss(lin(x), y); opt.zero_grad(); loss.backward(); opt.step()
    return loss
run(5); sync(); t = time.perf_counter()
loss = run(1000); sync()
print(json.dumps({"device": dev, "torch": torch.__version__, "threads": torch.get_num_threads(),
                  "linreg_sgd_steps_per_s": round(1000 / (time.perf_counter() - t)),
                  "linreg_final_loss": float(loss.detach())}))
