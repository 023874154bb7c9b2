// A virtualised list of rows of varying height: only the rows in (or near) the viewport exist in
// the DOM.  Heights start as an estimate and are measured once a row is rendered; offsets are
// prefix sums over them.  A list scrolled to its end stays at its end as rows arrive (follow).

export class VList {
  /**
   * @param {HTMLElement} scroller  the element that scrolls (overflow-y: auto, fixed height)
   * @param {(item, index) => HTMLElement} renderRow
   */
  constructor(scroller, renderRow, { estimate = 28, overscan = 600 } = {}) {
    this.scroller = scroller;
    this.renderRow = renderRow;
    this.estimate = estimate;
    this.overscan = overscan;
    this.items = [];
    this.heights = [];
    this.offsets = new Float64Array(1);
    this.dirtyFrom = 0;
    this.nodes = new Map(); // index → element
    this.follow = true;
    this.inner = document.createElement('div');
    this.inner.className = 'vl-inner';
    scroller.appendChild(this.inner);
    this.frame = 0;
    this.onScroll = () => {
      // The end from our own total height: no layout forced in the scroll handler.
      this.follow = scroller.scrollTop + this.viewH >= this.offsets[this.items.length] - 8;
      this.schedule();
    };
    scroller.addEventListener('scroll', this.onScroll, { passive: true });
    // A new width re-flows every row: all heights are measured again.
    this.width = scroller.clientWidth;
    this.viewH = scroller.clientHeight;
    this.measured = new WeakMap(); // item → height, kept across replace()
    this.ro = new ResizeObserver(() => {
      const w = scroller.clientWidth;
      this.viewH = scroller.clientHeight;
      if (w !== this.width && this.width) {
        this.width = w;
        this.heights.fill(-1);
        this.measured = new WeakMap();
        this.dirtyFrom = 0;
        for (const n of this.nodes.values()) n.remove();
        this.nodes.clear();
        this.render(); // now, not next frame: no frame without rows
        return;
      }
      this.width = w;
      this.schedule();
    });
    this.ro.observe(scroller);
  }

  destroy() {
    cancelAnimationFrame(this.frame);
    this.scroller.removeEventListener('scroll', this.onScroll);
    this.ro.disconnect();
  }

  /** Append items; the rows render on the next frame (or now with `sync`). */
  push(items, sync = false) {
    if (!items.length) return;
    const from = this.items.length;
    for (const it of items) {
      this.items.push(it);
      this.heights.push(-1);
    }
    this.dirtyFrom = Math.min(this.dirtyFrom, from);
    if (sync) this.render(); else this.schedule();
  }

  /** Replace the items (a reordered list); heights measured before are kept. */
  replace(items) {
    for (const n of this.nodes.values()) n.remove();
    this.nodes.clear();
    this.items = items.slice();
    this.heights = this.items.map((it) => this.measured.get(it) ?? -1);
    this.dirtyFrom = 0;
    this.render();
  }

  /** Item `i` changed (content or open/closed): re-render and re-measure it. */
  invalidate(i) {
    const n = this.nodes.get(i);
    if (n) { n.remove(); this.nodes.delete(i); }
    this.heights[i] = -1;
    this.measured.delete(this.items[i]);
    this.dirtyFrom = Math.min(this.dirtyFrom, i);
    this.schedule();
  }

  /** A rendered row changed height by itself (a <details> opened): measure again. */
  remeasure(i) {
    this.heights[i] = -1;
    this.measured.delete(this.items[i]);
    this.dirtyFrom = Math.min(this.dirtyFrom, i);
    this.schedule();
  }

  schedule() {
    if (this.frame) return;
    this.frame = requestAnimationFrame(() => { this.frame = 0; this.render(); });
  }

  layout() {
    const n = this.items.length;
    if (this.offsets.length < n + 1) {
      const o = new Float64Array(Math.max(n + 1, this.offsets.length * 2));
      o.set(this.offsets.subarray(0, Math.min(this.offsets.length, this.dirtyFrom + 1)));
      this.offsets = o;
    }
    for (let i = this.dirtyFrom; i < n; i++) {
      const hgt = this.heights[i] >= 0 ? this.heights[i] : this.estimate;
      this.offsets[i + 1] = this.offsets[i] + hgt;
    }
    this.dirtyFrom = n;
    if (this.innerH !== this.offsets[n]) {
      this.innerH = this.offsets[n];
      this.inner.style.height = `${this.innerH}px`;
    }
  }

  indexAt(y) {
    let lo = 0, hi = this.items.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (this.offsets[mid + 1] <= y) lo = mid + 1; else hi = mid;
    }
    return lo;
  }

  render() {
    const sc = this.scroller;
    const n = () => this.items.length;
    this.layout();
    if (this.follow) sc.scrollTop = this.offsets[n()];
    let top = sc.scrollTop; // the one read that may lay out
    const vh = sc.clientHeight;
    for (let pass = 0; pass < 3; pass++) {
      const from = Math.max(0, top - this.overscan), to = top + vh + this.overscan;
      const keep = new Set();
      const fresh = [];
      for (let i = this.indexAt(from); i < n() && this.offsets[i] < to; i++) {
        keep.add(i);
        let node = this.nodes.get(i);
        if (!node) {
          // A wrapper of our own: the row's own margins and borders stay inside what we measure.
          node = document.createElement('div');
          node.className = 'vl-row';
          node.appendChild(this.renderRow(this.items[i], i));
          node.dataset.index = String(i);
          node._y = -1;
          this.nodes.set(i, node);
          this.inner.appendChild(node);
        }
        if (this.heights[i] < 0) fresh.push(i);
        if (node._y !== this.offsets[i]) { node._y = this.offsets[i]; node.style.transform = `translateY(${node._y}px)`; }
      }
      for (const [i, node] of this.nodes) {
        if (!keep.has(i)) { node.remove(); this.nodes.delete(i); }
      }
      if (!fresh.length) break;
      // Measure the new rows (one layout for all of them), then place again with true heights,
      // keeping the first visible row where it was (unless following the end).
      const anchor = this.indexAt(top), anchorDelta = this.offsets[anchor] - top;
      let changed = false;
      for (const i of fresh) {
        const hgt = this.nodes.get(i).offsetHeight;
        this.heights[i] = hgt;
        if (hgt > 0) this.measured.set(this.items[i], hgt);
        if (hgt !== this.estimate) { changed = true; this.dirtyFrom = Math.min(this.dirtyFrom, i); }
      }
      if (!changed) break;
      this.layout();
      if (this.follow) {
        sc.scrollTop = this.offsets[n()];
        top = sc.scrollTop;
      } else {
        const want = Math.max(0, this.offsets[anchor] - anchorDelta);
        if (Math.abs(want - top) >= 1) { sc.scrollTop = want; top = want; }
      }
    }
    for (const [i, node] of this.nodes) {
      if (node._y !== this.offsets[i]) { node._y = this.offsets[i]; node.style.transform = `translateY(${node._y}px)`; }
    }
  }
}
