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
      const atEnd = scroller.scrollTop + scroller.clientHeight >= scroller.scrollHeight - 8;
      this.follow = atEnd;
      this.schedule();
    };
    scroller.addEventListener('scroll', this.onScroll, { passive: true });
    // A new width re-flows every row: all heights are measured again.
    this.width = scroller.clientWidth;
    this.measured = new WeakMap(); // item → height, kept across replace()
    this.ro = new ResizeObserver(() => {
      const w = scroller.clientWidth;
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
    this.inner.style.height = `${this.offsets[n]}px`;
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
    const follow = this.follow;
    for (let pass = 0; pass < 3; pass++) {
      this.layout();
      if (follow) this.scroller.scrollTop = this.scroller.scrollHeight;
      const top = this.scroller.scrollTop - this.overscan;
      const bottom = this.scroller.scrollTop + this.scroller.clientHeight + this.overscan;
      const first = this.indexAt(Math.max(0, top));
      const keep = new Set();
      const fresh = [];
      for (let i = first; i < this.items.length && this.offsets[i] < bottom; i++) {
        keep.add(i);
        let node = this.nodes.get(i);
        if (!node) {
          node = this.renderRow(this.items[i], i);
          node.classList.add('vl-row');
          node.dataset.index = String(i);
          this.nodes.set(i, node);
          this.inner.appendChild(node);
          fresh.push(i);
        }
        node.style.transform = `translateY(${this.offsets[i]}px)`;
      }
      for (const [i, node] of this.nodes) {
        if (!keep.has(i)) { node.remove(); this.nodes.delete(i); }
      }
      // Measure what has no height yet (reads after all writes: one layout).
      let changed = false;
      for (const i of keep) {
        if (this.heights[i] >= 0) continue;
        const hgt = this.nodes.get(i).offsetHeight;
        this.heights[i] = hgt;
        if (hgt > 0) this.measured.set(this.items[i], hgt);
        if (hgt !== this.estimate) { changed = true; this.dirtyFrom = Math.min(this.dirtyFrom, i); }
      }
      if (!changed) break;
    }
    this.layout();
    for (const [i, node] of this.nodes) node.style.transform = `translateY(${this.offsets[i]}px)`;
    if (follow) this.scroller.scrollTop = this.scroller.scrollHeight;
  }
}
