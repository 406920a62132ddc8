from clinic_shared.migrations import run_env
from waitlist.adapters.orm import metadata

run_env(metadata)
