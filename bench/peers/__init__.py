"""The registry benchmark's peers: torch.save and safetensors in process, RLlib and MLflow in .venv-peers."""
