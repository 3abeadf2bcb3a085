"""Browser-side view controls of the web UI and the object legend.

Gradio's Image has no wheel, zoom or pan, so :data:`VIEW_JS` (run once by a ``gr.HTML``'s
``js_on_load``) adds them in the page:

- the mouse wheel over the picture moves the slice slider one step (its ``change`` event
  re-renders on the server, as a drag of the slider would);
- Ctrl (or Cmd) + wheel zooms about the cursor, 1x..8x, by a CSS transform of the ``<img>``;
- Shift + drag, or a middle-button drag, pans; "reset view" (or the ``0`` key over the
  picture) undoes both.

Zoom and pan are CSS only, so the server renders nothing more. Gradio maps a click to an
image pixel from the ``<img>``'s bounding box but never past 1 screen pixel per image pixel;
so while zoomed, a click is re-sent with the position Gradio's mapping needs for the pixel
under the cursor (:data:`VIEW_JS`, ``forward``). The browser test checks both.
"""

from __future__ import annotations

import html

from medisam.io.overlay import PALETTE

#: Default fill opacity of an object in the picture (the overlay PNG's alpha).
DEFAULT_OPACITY = 0.4

VIEW_HTML = ('<div id="medisam-viewhelp" style="font-size:0.85em">wheel: slice &middot; Ctrl+wheel: zoom '
             '&middot; Shift+drag: pan &middot; <a href="#" id="medisam-reset-view">reset view</a></div>')

VIEW_JS = r"""
if (!window.__medisamView) {
  const v = window.__medisamView = {z: 1, tx: 0, ty: 0, pan: null, panned: false, lastWheel: 0};
  const view = () => document.querySelector('#medisam-view');
  const img = () => view()?.querySelector('img');
  const style = document.createElement('style');
  style.textContent = '#medisam-view img{transform-origin:0 0;transform:translate(var(--msx,0px),var(--msy,0px)) ' +
                      'scale(var(--msz,1))} #medisam-view .image-container, #medisam-view button{overflow:hidden}';
  document.head.appendChild(style);
  const apply = () => {
    const s = document.documentElement.style;
    s.setProperty('--msz', v.z); s.setProperty('--msx', v.tx + 'px'); s.setProperty('--msy', v.ty + 'px');
    const el = view(); if (el) el.dataset.zoom = v.z.toFixed(3);
  };
  const reset = () => { v.z = 1; v.tx = 0; v.ty = 0; apply(); };
  const inView = (e) => { const el = view(); return el && el.contains(e.target) && img(); };
  const stepSlice = (d) => {
    const r = document.querySelector('#medisam-slice input[type=range]');
    if (!r || r.disabled) return;
    const lo = Number(r.min), hi = Number(r.max), now = Number(r.value);
    const next = Math.min(hi, Math.max(lo, now + d));
    if (next === now) return;
    r.value = String(next);
    r.dispatchEvent(new Event('input', {bubbles: true}));
    r.dispatchEvent(new Event('change', {bubbles: true}));
  };
  document.addEventListener('wheel', (e) => {
    if (!inView(e)) return;
    e.preventDefault();
    if (e.ctrlKey || e.metaKey) {
      const rect = img().getBoundingClientRect();
      const z = Math.min(8, Math.max(1, v.z * (e.deltaY < 0 ? 1.25 : 0.8)));
      const ux = (e.clientX - rect.left) / v.z, uy = (e.clientY - rect.top) / v.z;
      v.tx += (e.clientX - z * ux) - rect.left; v.ty += (e.clientY - z * uy) - rect.top;
      v.z = z; if (z === 1) { v.tx = 0; v.ty = 0; }
      apply();
    } else if (e.timeStamp - v.lastWheel > 60 && e.deltaY !== 0) {
      v.lastWheel = e.timeStamp;
      stepSlice(e.deltaY > 0 ? 1 : -1);
    }
  }, {passive: false, capture: true});
  document.addEventListener('pointerdown', (e) => {
    if (!inView(e) || !(e.shiftKey || e.button === 1)) return;
    e.preventDefault();
    v.pan = {x: e.clientX, y: e.clientY, tx: v.tx, ty: v.ty}; v.panned = false;
  }, true);
  document.addEventListener('pointermove', (e) => {
    if (!v.pan) return;
    v.tx = v.pan.tx + e.clientX - v.pan.x; v.ty = v.pan.ty + e.clientY - v.pan.y;
    v.panned = v.panned || Math.abs(e.clientX - v.pan.x) + Math.abs(e.clientY - v.pan.y) > 2;
    apply();
  }, true);
  document.addEventListener('pointerup', () => { if (v.pan) { v.pan = null; } }, true);
  document.addEventListener('click', (e) => {
    if (e.target?.id === 'medisam-reset-view') { e.preventDefault(); reset(); return; }
    if (!inView(e) || e.__medisam) return;
    if (e.shiftKey || v.panned) { e.stopPropagation(); e.preventDefault(); v.panned = false; return; }
    if (v.z === 1 && v.tx === 0 && v.ty === 0) return;
    // forward: the pixel under the cursor, at the position Gradio's (unzoomed) mapping expects
    const im = img(), R = im.getBoundingClientRect(), nw = im.naturalWidth, nh = im.naturalHeight;
    const r0 = Math.min(R.width / v.z / nw, R.height / v.z / nh, 1), r = r0 * v.z;
    const px = (e.clientX - R.left - (R.width - nw * r) / 2) / r;
    const py = (e.clientY - R.top - (R.height - nh * r) / 2) / r;
    const rg = Math.min(R.width / nw, R.height / nh, 1);
    const fake = new MouseEvent('click', {bubbles: true, cancelable: true, view: window,
      clientX: R.left + (R.width - nw * rg) / 2 + px * rg, clientY: R.top + (R.height - nh * rg) / 2 + py * rg});
    fake.__medisam = true;
    e.stopPropagation(); e.preventDefault();
    e.target.dispatchEvent(fake);
  }, true);
  document.addEventListener('keydown', (e) => {
    if (e.key === '0' && document.querySelector('#medisam-view:hover')) reset();
  });
  apply();
}
"""


def legend_html(object_ids: list[int], opacity: dict[int, float]) -> str:
    """The object legend: colour swatch, object id and fill opacity of each object."""
    if not object_ids:
        return '<div id="medisam-legend-items">no objects yet</div>'
    rows = []
    for obj in object_ids:
        r, g, b = (int(c) for c in PALETTE[(obj - 1) % len(PALETTE)])
        o = opacity.get(obj, DEFAULT_OPACITY)
        shown = "hidden" if o <= 0 else f"opacity {round(100 * o)}%"
        rows.append(f'<div class="medisam-legend-row" data-obj="{obj}" data-opacity="{o:.2f}">'
                    f'<span style="display:inline-block;width:1em;height:1em;margin-right:0.4em;'
                    f'vertical-align:middle;background:rgba({r},{g},{b},{max(o, 0.15):.2f});'
                    f'border:2px solid rgb({r},{g},{b})"></span>object {obj} &middot; {html.escape(shown)}</div>')
    rows.append('<div class="medisam-legend-key">marks: white = a box, line, positive click or scribble; '
                'black = a negative click or scribble</div>')
    return '<div id="medisam-legend-items">' + "".join(rows) + "</div>"
