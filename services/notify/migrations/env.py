from clinic_shared.migrations import run_env
from notify.adapters.orm import metadata

run_env(metadata)
