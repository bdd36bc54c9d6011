"""An off-the-shelf face detector must see the built-in faces as faces."""
import cv2
import numpy as np

from faces.identity import make_appearance, make_identity
from faces.render import Camera


def test_haar_cascade_finds_exactly_one_face(builtin_model, renderer):
    cascade = cv2.CascadeClassifier(cv2.data.haarcascades + "haarcascade_frontalface_default.xml")
    assert not cascade.empty()
    hits = []
    for i in range(50):
        spec = make_identity(i, 2024, builtin_model)
        app = make_appearance(spec, builtin_model)
        mesh = builtin_model.mesh(builtin_model.neutral(spec.shape))
        rgb = renderer.render(mesh, Camera(target=builtin_model.camera_target), 256,
                              texture=app.texture, outputs=("rgb",))["rgb"]
        gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
        hits.append(len(cascade.detectMultiScale(gray, scaleFactor=1.1, minNeighbors=5)))
    rate = np.mean(np.array(hits) == 1)
    assert rate >= 0.9, f"exactly one face in {rate:.0%} of renders; counts {hits}"
    # a blank image has none (the detector is not simply saying yes)
    assert len(cascade.detectMultiScale(np.full((256, 256), 128, np.uint8))) == 0
