"""Stand-in of NFR's data_loader (imported by test_user; the bridge does not use it)."""


def load_data_ict_live(*args, **kwargs):
    raise RuntimeError("the stand-in has no ICT_live data")


def load_data_mf_v3(*args, **kwargs):
    raise RuntimeError("the stand-in has no Multiface data")
