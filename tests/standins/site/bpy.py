"""Stand-in for Blender's bpy module (the real hy3dpaint mesh_utils imports it)."""
from types import SimpleNamespace

context = SimpleNamespace(scene=SimpleNamespace(objects=[]))
data = SimpleNamespace(objects=SimpleNamespace(remove=lambda obj, do_unlink=True: None))
ops = SimpleNamespace()
