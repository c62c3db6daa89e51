# Runtime shared by every hisyngen config: mmseg's default runtime + the hisyngen plugin.
_base_ = ['mmseg::_base_/default_runtime.py']

# Importing hisyngen.mmseg applies the environment workarounds (hisyngen/mmseg/compat.py) and
# registers the HisynSeg datasets, transforms, sampler, head, losses, metric and hooks.
custom_imports = dict(imports=['hisyngen.mmseg'], allow_failed_imports=False)

randomness = dict(seed=0)
log_processor = dict(by_epoch=False)
# Tear the process group down after a distributed run (gloo on CPU aborted at exit without it).
custom_hooks = [dict(type='DistTeardownHook')]
