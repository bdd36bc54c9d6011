"""GLSL of the renderer (faces/render.py): the one-pass program and the UV baker."""
from __future__ import annotations

OUTPUTS = ("rgb", "vcolor", "depth", "mask")

VERT = """
#version 330
uniform mat4 mvp;
uniform mat4 view;
in vec3 in_pos;
in vec3 in_normal;
in vec2 in_uv;
in vec3 in_color;
in vec3 in_vcolor;   // the vertex-colour output's colours (heatmap), drawn in the same pass
in float in_material;
out vec3 v_normal;   // camera space
out vec3 v_pos;      // camera space
out vec2 v_uv;
out vec3 v_color;
out vec3 v_vcolor;
flat out int v_material;
void main() {
    vec4 cam = view * vec4(in_pos, 1.0);
    v_pos = cam.xyz;
    v_normal = mat3(view) * in_normal;
    v_uv = in_uv;
    v_color = in_color;
    v_vcolor = in_vcolor;
    v_material = int(in_material + 0.5);
    gl_Position = mvp * vec4(in_pos, 1.0);
}
"""

FRAG_HEAD = """
#version 330
uniform sampler2D albedo;
uniform bool has_texture;
uniform vec3 key_dir;    // towards the light, camera space
uniform vec3 fill_dir;
uniform vec3 key_color;  // linear RGB of the key (colour temperature)
uniform vec3 up_dir;     // world up in camera space (hair strands run against it)
uniform float key_strength;
uniform float fill_strength;
uniform float ambient;
in vec3 v_normal;
in vec3 v_pos;
in vec2 v_uv;
in vec3 v_color;
in vec3 v_vcolor;
flat in int v_material;
"""

# Materials (MATERIALS below): skin gets wrapped diffuse, a red-shifted scatter band at the
# light's terminator (the soft look of subsurface scattering), a broad specular sheen and a
# Fresnel rim; eyes a sharp corneal highlight; hair Kajiya-Kay highlights along the strands
# and strand-wise albedo variation; cloth a wrapped, matte diffuse.
FRAG_BODY = """
float hash(float x) { return fract(sin(x * 12.9898) * 43758.5453); }
void main() {
    vec3 n = normalize(v_normal);
    vec3 view_dir = normalize(-v_pos);
    if (dot(n, view_dir) < 0.0) n = -n;  // two-sided (ears, lids seen from behind)
    vec3 base = has_texture ? texture(albedo, v_uv).rgb : v_color;
    vec3 lin = pow(base, vec3(2.2));
    vec3 h = normalize(key_dir + view_dir);
    float ndl = dot(n, key_dir);
    float ndh = max(dot(n, h), 0.0);
    float fres = pow(1.0 - max(dot(n, view_dir), 0.0), 5.0);
    float wrap = 0.0;
    vec3 scatter = vec3(0.0);
    vec3 spec = vec3(0.0);
    if (MAT == 0) {          // skin
        wrap = max((ndl + 0.35) / 1.35, 0.0);
        scatter = vec3(0.20, 0.05, 0.02) * smoothstep(-0.35, 0.1, ndl) * (1.0 - smoothstep(0.1, 0.6, ndl));
        spec = vec3(pow(ndh, 36.0) * 0.07 + fres * 0.05 * max(ndl, 0.0));
    } else if (MAT == 1) {   // eye
        wrap = max(ndl, 0.0);
        spec = vec3(pow(ndh, 220.0) * 0.9);
    } else if (MAT == 2) {   // hair
        vec3 t = normalize(up_dir - n * dot(up_dir, n) + vec3(1e-5));
        float s = floor(v_uv.x * 900.0);
        lin *= 0.72 + 0.28 * hash(s) + 0.12 * sin(v_uv.y * 90.0 + 6.0 * hash(s + 3.0));
        wrap = 0.3 + 0.7 * max(ndl, 0.0);
        float th = dot(t, h);
        spec = vec3(pow(sqrt(max(1.0 - th * th, 0.0)), 80.0) * 0.10) * max(ndl + 0.2, 0.0)
             + lin * pow(sqrt(max(1.0 - (th + 0.2) * (th + 0.2), 0.0)), 20.0) * 0.25;
    } else {                        // cloth
        wrap = max((ndl + 0.2) / 1.2, 0.0);
        spec = vec3(fres * 0.04);
    }
    float fill = max((dot(n, fill_dir) + 0.2) / 1.2, 0.0);
    vec3 amb = vec3(ambient * (0.85 + 0.15 * dot(n, up_dir)));
    vec3 shaded = lin * (amb + key_color * key_strength * (wrap + scatter) + fill_strength * fill)
                  + key_color * key_strength * spec;
    out_rgb = vec4(pow(clamp(shaded, 0.0, 1.0), vec3(1.0 / 2.2)), 1.0);
    out_vcolor = vec4(v_vcolor, 1.0);
    out_depth = -v_pos.z;
    out_mask = 1.0;
}
"""
OUT_TYPES = {"rgb": "vec4", "vcolor": "vec4", "depth": "float", "mask": "float"}


def fragment_shader(outputs: tuple[str, ...], material: int | None = None) -> str:
    """Requested outputs get consecutive locations (matching the framebuffer's attachments);
    the others become locals that the compiler drops. ``material``: a program for triangles
    of that material only (its branch alone survives; llvmpipe otherwise runs every branch
    of the material switch on every pixel), None: the per-vertex switch."""
    decl = []
    for name in OUTPUTS:
        if name in outputs:
            decl.append(f"layout(location = {outputs.index(name)}) out {OUT_TYPES[name]} out_{name};")
    body = FRAG_BODY
    locals_ = "".join(f"    {OUT_TYPES[n]} out_{n};\n" for n in OUTPUTS if n not in outputs)
    body = body.replace("void main() {\n", "void main() {\n" + locals_, 1)
    mat = f"#define MAT {int(material)}\n" if material is not None else "#define MAT v_material\n"
    head = FRAG_HEAD.replace("#version 330\n", "#version 330\n" + mat, 1)
    return head + "\n".join(decl) + "\n" + body



BAKE_VERT = """
#version 330
uniform float u_shift;
in vec2 in_uv;
in vec4 in_attr;
out vec4 v_attr;
void main() {
    v_attr = in_attr;
    gl_Position = vec4((in_uv.x + u_shift) * 2.0 - 1.0, in_uv.y * 2.0 - 1.0, 0.0, 1.0);
}
"""

BAKE_FRAG = """
#version 330
in vec4 v_attr;
layout(location = 0) out vec4 out_attr;
void main() { out_attr = v_attr; }
"""
