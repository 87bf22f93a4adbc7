/* pm.fold, flame graph: a profile laid out as flame-graph SVG frames, one
 * <g> per frame, coloured by a palette the caller passes in (the palettes
 * are data: lib/perf_manual/report/palettes.lua). The page around the
 * frames is made in Lua (perf_manual.report.flamegraph). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>

#include "fold_internal.h"

/* ---- frame order ------------------------------------------------------------ */

/* Frame order by plain memcmp: each key copied with ';' turned into 0x00,
 * the smallest byte, so libc's vectorised memcmp does the work (stacks share
 * long prefixes). A NUL inside a name then ties with ';': the layout stays
 * valid, such a frame may just be drawn in two pieces. */
struct fkey {
  const char *k;
  size_t len;
  struct entry *e;
};

static int cmp_fkeys(const void *a, const void *b)
{
  const struct fkey *x = a, *y = b;
  size_t m = x->len < y->len ? x->len : y->len;
  int c = memcmp(x->k, y->k, m);
  if (c)
    return c;
  return (x->len > y->len) - (x->len < y->len);
}

static struct entry **sorted_frames(struct profile *p)
{
  size_t bytes = 0;
  for (size_t i = 0; i < p->n; i++)
    bytes += p->ents[i].len;
  struct fkey *fk = malloc((p->n ? p->n : 1) * sizeof *fk);
  char *t = malloc(bytes ? bytes : 1);
  struct entry **v = malloc((p->n ? p->n : 1) * sizeof *v);
  if (!fk || !t || !v) {
    free(fk);
    free(t);
    free(v);
    return NULL;
  }
  size_t off = 0;
  for (size_t i = 0; i < p->n; i++) {
    const struct entry *e = &p->ents[i];
    char *d = t + off;
    memcpy(d, e->key, e->len);
    for (char *q = memchr(d, ';', e->len); q; q = memchr(q + 1, ';', e->len - (size_t)(q + 1 - d)))
      *q = 0;
    fk[i].k = d;
    fk[i].len = e->len;
    fk[i].e = &p->ents[i];
    off += e->len;
  }
  qsort(fk, p->n, sizeof *fk, cmp_fkeys);
  for (size_t i = 0; i < p->n; i++)
    v[i] = fk[i].e;
  free(fk);
  free(t);
  return v;
}

/* ---- flame graph layout --------------------------------------------------- */

struct open_frame {
  const char *name;
  uint32_t len;
  uint64_t start;   /* first sample under this frame */
  uint64_t self;    /* samples of stacks ending here */
  const char *path; /* the stack this frame's path was read from */
  uint32_t pathlen; /* bytes of `path` up to and including this frame */
};

/* A colour channel: base + span * one of three bytes of the frame name's
 * hash (0..1), so a name keeps its colour from one graph to the next. */
struct chan {
  double base, span;
  int byte; /* 0..2 */
};

/* The first rule that matches a frame colours it: by its kind (the letter
 * of its _[x] suffix, 'u' for none) and/or a substring of its name. */
struct rule {
  uint32_t kinds;     /* bit (letter - 'a') per kind matched; 0: any */
  const char *needle; /* NULL: any name; else a string in the palette table */
  size_t needlen;
  struct chan c[3];
};

#define MAX_RULES 64

struct palette {
  struct rule rules[MAX_RULES];
  int nrules;
  int root[3]; /* the "all" frame, and frames no rule matches */
  int diff;    /* differential: coloured by the change against `before` */
  int grow[3], shrink[3];
  double fade; /* added to every channel of an unchanged frame (toward white) */
};

struct layout {
  double width, xpad, frameh, top, fontsize, fontwidth, minwidth, scale;
  int inverted, maxdepth, pass;
  const struct palette *pal;
  uint64_t total;
  size_t frames, pruned_frames;
  uint64_t pruned_samples;
  struct buf out;
  struct profile *before;      /* differential: the before profile */
  struct profile *before_incl; /* its inclusive counts per path prefix */
  double before_total;
  double maxdelta;
  char unit[32]; /* what a count is: "samples", "us", ... */
  int oom;
};

/* XML text: escapes markup, turns control bytes and broken UTF-8 into '?' so
 * the SVG always parses. Returns bytes of `s` consumed (<= max_chars chars). */
static int xml_escape(struct buf *b, const char *s, size_t n)
{
  size_t i = 0;
  while (i < n) {
    unsigned char c = (unsigned char)s[i];
    const char *rep = NULL;
    switch (c) {
    case '&': rep = "&amp;"; break;
    case '<': rep = "&lt;"; break;
    case '>': rep = "&gt;"; break;
    case '"': rep = "&quot;"; break;
    case '\'': rep = "&#39;"; break;
    default: break;
    }
    if (rep) {
      if (buf_add(b, rep, strlen(rep)))
        return -1;
      i++;
      continue;
    }
    if (c < 0x20 || c == 0x7f) {
      if (buf_add(b, "?", 1))
        return -1;
      i++;
      continue;
    }
    if (c < 0x80) {
      if (buf_add(b, s + i, 1))
        return -1;
      i++;
      continue;
    }
    size_t need = c >= 0xf0 && c <= 0xf4 ? 4 : c >= 0xe0 ? 3 : c >= 0xc2 && c < 0xe0 ? 2 : 0;
    if (c > 0xf4)
      need = 0;
    int ok = need && i + need <= n;
    for (size_t k = 1; ok && k < need; k++)
      if (((unsigned char)s[i + k] & 0xc0) != 0x80)
        ok = 0;
    if (ok && need == 3) {
      unsigned char d = (unsigned char)s[i + 1];
      if ((c == 0xe0 && d < 0xa0) || (c == 0xed && d >= 0xa0))
        ok = 0;
    }
    if (ok && need == 4) {
      unsigned char d = (unsigned char)s[i + 1];
      if ((c == 0xf0 && d < 0x90) || (c == 0xf4 && d >= 0x90))
        ok = 0;
    }
    if (!ok) {
      if (buf_add(b, "?", 1))
        return -1;
      i++;
      continue;
    }
    if (buf_add(b, s + i, need))
      return -1;
    i += need;
  }
  return 0;
}

static uint32_t name_hash(const char *s, size_t n)
{
  uint32_t h = 2166136261u;
  for (size_t i = 0; i < n; i++)
    h = (h ^ (unsigned char)s[i]) * 16777619u;
  return h;
}

static int frame_kind(const char *s, size_t n)
{
  if (n >= 4 && s[n - 4] == '_' && s[n - 3] == '[' && s[n - 1] == ']') {
    switch (s[n - 2]) {
    case 'k': return 'k';
    case 'j': return 'j';
    case 'i': return 'i';
    case 'o': return 'o';
    default: break;
    }
  }
  return 'u';
}

static void frame_color(struct layout *ly, const char *s, size_t n, int kind, double delta, int *r, int *g,
                        int *b)
{
  const struct palette *pal = ly->pal;
  int *rgb[3] = { r, g, b };
  if (pal->diff) {
    /* white = unchanged; saturation by |delta| relative to the largest */
    double m = ly->maxdelta > 0 ? delta / ly->maxdelta : 0;
    if (m > 1)
      m = 1;
    if (m < -1)
      m = -1;
    int fade = (int)(pal->fade * (1 - (m < 0 ? -m : m)));
    const int *base = m >= 0 ? pal->grow : pal->shrink;
    for (int i = 0; i < 3; i++) {
      int v = base[i] + fade;
      *rgb[i] = v > 255 ? 255 : v;
    }
    return;
  }
  uint32_t h = name_hash(s, n);
  double v[3] = { (h & 0xff) / 255.0, ((h >> 8) & 0xff) / 255.0, ((h >> 16) & 0xff) / 255.0 };
  uint32_t kbit = kind >= 'a' && kind <= 'z' ? 1u << (kind - 'a') : 0;
  for (int k = 0; k < pal->nrules; k++) {
    const struct rule *ru = &pal->rules[k];
    if (ru->kinds && !(ru->kinds & kbit))
      continue;
    if (ru->needle && !memmem(s, n, ru->needle, ru->needlen))
      continue;
    for (int i = 0; i < 3; i++)
      *rgb[i] = (int)(ru->c[i].base + ru->c[i].span * v[ru->c[i].byte]);
    return;
  }
  for (int i = 0; i < 3; i++)
    *rgb[i] = pal->root[i];
}

static void fmt_count(char *out, size_t cap, uint64_t v)
{
  char tmp[32];
  int n = snprintf(tmp, sizeof tmp, "%llu", (unsigned long long)v);
  size_t o = 0;
  for (int i = 0; i < n && o + 2 < cap; i++) {
    if (i > 0 && (n - i) % 3 == 0)
      out[o++] = ',';
    out[o++] = tmp[i];
  }
  out[o] = 0;
}

static void emit_frame(struct layout *ly, const struct open_frame *f, int depth, uint64_t end)
{
  uint64_t samples = end - f->start;
  double w = (double)samples * ly->scale;
  if (w < ly->minwidth) {
    /* pruned: count only the top of each pruned subtree, whose parent is drawn */
    if (ly->pass == 1) {
      ly->pruned_frames++;
      ly->pruned_samples += f->self; /* still inside every drawn ancestor */
    }
    return;
  }
  if (ly->pass == 1) {
    if (depth > ly->maxdepth)
      ly->maxdepth = depth;
    return;
  }
  ly->frames++;
  double x = ly->xpad + (double)f->start * ly->scale;
  double y = ly->inverted ? ly->top + depth * ly->frameh
                          : ly->top + (ly->maxdepth - depth) * ly->frameh;
  int kind = depth == 0 ? 'a' : frame_kind(f->name, f->len);
  double delta = 0, bincl = 0;
  if (ly->pal->diff && depth > 0) {
    double aself = ly->total ? (double)f->self / (double)ly->total : 0;
    struct entry *be = pm_profile_find(ly->before, f->path, f->pathlen, pm_fold_hash(f->path, f->pathlen));
    double bself = be && ly->before_total > 0 ? (double)be->count / ly->before_total : 0;
    delta = aself - bself;
    struct entry *bi = pm_profile_find(ly->before_incl, f->path, f->pathlen, pm_fold_hash(f->path, f->pathlen));
    bincl = bi ? (double)bi->count : 0;
  }
  int r, g, b;
  if (depth == 0) {
    r = ly->pal->root[0];
    g = ly->pal->root[1];
    b = ly->pal->root[2];
  } else {
    frame_color(ly, f->name, f->len, kind, delta, &r, &g, &b);
  }
  struct buf *o = &ly->out;
  char tmp[400], cnt[40];
  fmt_count(cnt, sizeof cnt, samples);
  if (buf_add(o, "<g><title>", 10))
    goto oom;
  if (depth == 0) {
    if (buf_add(o, "all", 3))
      goto oom;
  } else if (xml_escape(o, f->name, f->len)) {
    goto oom;
  }
  double pct = ly->total ? 100.0 * (double)samples / (double)ly->total : 0;
  int k;
  if (ly->pal->diff && depth > 0) {
    double bpct = ly->before_total > 0 ? 100.0 * bincl / ly->before_total : 0;
    k = snprintf(tmp, sizeof tmp, " (%s %s, %.2f%%; before %.2f%%, %+.2f pts; self %+.2f pts)",
                 cnt, ly->unit, pct, bpct, pct - bpct, 100.0 * delta);
  } else {
    k = snprintf(tmp, sizeof tmp, " (%s %s, %.2f%%)", cnt, ly->unit, pct);
  }
  if (buf_add(o, tmp, (size_t)k))
    goto oom;
  k = snprintf(tmp, sizeof tmp,
               "</title><rect x=\"%.2f\" y=\"%.1f\" width=\"%.2f\" height=\"%.1f\" fill=\"rgb(%d,%d,%d)\" "
               "data-n=\"%llu\" data-k=\"%c\"/><text x=\"%.2f\" y=\"%.1f\">",
               x, y, w, ly->frameh - 1, r, g, b, (unsigned long long)samples, kind, x + 3,
               y + ly->frameh - 4.5);
  if (buf_add(o, tmp, (size_t)k))
    goto oom;
  /* label: as many characters as fit, ".." when cut */
  double cw = ly->fontsize * ly->fontwidth;
  size_t fit = cw > 0 ? (size_t)((w - 3) / cw) : 0;
  const char *nm = depth == 0 ? "all" : f->name;
  size_t nl = depth == 0 ? 3 : f->len;
  if (fit >= 3) {
    if (nl <= fit) {
      if (xml_escape(o, nm, nl))
        goto oom;
    } else {
      size_t cut = fit - 2;
      while (cut > 0 && ((unsigned char)nm[cut] & 0xc0) == 0x80)
        cut--; /* do not split a UTF-8 character */
      if (xml_escape(o, nm, cut) || buf_add(o, "..", 2))
        goto oom;
    }
  }
  if (buf_add(o, "</text></g>\n", 12))
    goto oom;
  return;
oom:
  ly->oom = 1;
}

/* Walks stacks in frame order, emitting each frame when it closes. */
static int layout_pass(struct layout *ly, struct entry **v, size_t n)
{
  struct open_frame *open = NULL;
  size_t depth = 0, cap = 0;
  uint64_t x = 0;
  struct open_frame root = { "all", 3, 0, 0, "", 0 };
  for (size_t i = 0; i < n; i++) {
    const char *s = v[i]->key;
    size_t len = v[i]->len;
    /* walk the frames of s, keeping the common prefix with the open path */
    size_t d = 0, a = 0;
    int diverged = 0;
    while (a <= len) {
      const char *semi = memchr(s + a, ';', len - a);
      size_t e = semi ? (size_t)(semi - s) : len;
      if (!diverged && d < depth && open[d].len == e - a && memcmp(open[d].name, s + a, e - a) == 0) {
        d++;
      } else {
        if (!diverged) {
          /* close everything from depth d on, deepest first */
          for (size_t k = depth; k-- > d;)
            emit_frame(ly, &open[k], (int)k + 1, x);
          depth = d;
          diverged = 1;
        }
        if (depth == cap) {
          size_t nc = cap ? cap * 2 : 64;
          struct open_frame *no = realloc(open, nc * sizeof *no);
          if (!no) {
            free(open);
            return -1;
          }
          open = no;
          cap = nc;
        }
        open[depth] = (struct open_frame){ s + a, (uint32_t)(e - a), x, 0, s, (uint32_t)e };
        depth++;
        d++;
      }
      if (!semi)
        break;
      a = e + 1;
    }
    if (!diverged) {
      for (size_t k = depth; k-- > d;)
        emit_frame(ly, &open[k], (int)k + 1, x);
      depth = d;
    }
    if (depth > 0)
      open[depth - 1].self += v[i]->count;
    x += v[i]->count;
  }
  for (size_t k = depth; k-- > 0;)
    emit_frame(ly, &open[k], (int)k + 1, x);
  root.start = 0;
  if (x > 0)
    emit_frame(ly, &root, 0, x);
  free(open);
  return ly->oom ? -1 : 0;
}

/* ---- the palette, read from its Lua table ------------------------------------ */

/* t[i] (1-based) of the table at idx as a number; raises when it is not one */
static double num_at(lua_State *L, int idx, int i, const char *what)
{
  lua_rawgeti(L, idx, i);
  if (!lua_isnumber(L, -1))
    luaL_error(L, "fold: svg: palette: %s: expected numbers", what);
  double v = lua_tonumber(L, -1);
  lua_pop(L, 1);
  return v;
}

/* t[name] of the table at idx as three colour values 0..255 */
static void read_rgb(lua_State *L, int idx, const char *name, int out[3])
{
  lua_getfield(L, idx, name);
  if (!lua_istable(L, -1))
    luaL_error(L, "fold: svg: palette: %s: expected {r, g, b}", name);
  for (int i = 0; i < 3; i++) {
    double v = num_at(L, lua_gettop(L), i + 1, name);
    if (!(v >= 0 && v <= 255))
      luaL_error(L, "fold: svg: palette: %s: expected values 0..255", name);
    out[i] = (int)v;
  }
  lua_pop(L, 1);
}

/* rule[name] = {base, span, byte}: byte 1..3 */
static void read_chan(lua_State *L, int idx, const char *name, struct chan *c)
{
  lua_getfield(L, idx, name);
  if (!lua_istable(L, -1))
    luaL_error(L, "fold: svg: palette: rule %s: expected {base, span, byte}", name);
  int t = lua_gettop(L);
  c->base = num_at(L, t, 1, name);
  c->span = num_at(L, t, 2, name);
  double byte = num_at(L, t, 3, name);
  if (!(byte == 1 || byte == 2 || byte == 3))
    luaL_error(L, "fold: svg: palette: rule %s: byte must be 1, 2 or 3", name);
  c->byte = (int)byte - 1;
  lua_pop(L, 1);
}

/* The palette table at idx (as perf_manual.report.flamegraph hands it over):
 * { root = {r,g,b}, rules = { {kinds = "kj", contains = "s", r = {base, span,
 * byte}, g = .., b = ..}, ... } } or { root = .., diff = { grow = {r,g,b},
 * shrink = {r,g,b}, fade = N } }. Strings stay owned by the table, which
 * the caller's opts keep alive for the call. */
static void read_palette(lua_State *L, int idx, struct palette *pal)
{
  memset(pal, 0, sizeof *pal);
  read_rgb(L, idx, "root", pal->root);
  lua_getfield(L, idx, "diff");
  if (lua_istable(L, -1)) {
    int d = lua_gettop(L);
    pal->diff = 1;
    read_rgb(L, d, "grow", pal->grow);
    read_rgb(L, d, "shrink", pal->shrink);
    lua_getfield(L, d, "fade");
    pal->fade = lua_tonumber(L, -1);
    if (!(pal->fade >= 0 && pal->fade <= 255))
      luaL_error(L, "fold: svg: palette: diff.fade: expected 0..255");
    lua_pop(L, 2);
    return;
  }
  lua_pop(L, 1);
  lua_getfield(L, idx, "rules");
  if (!lua_istable(L, -1))
    luaL_error(L, "fold: svg: palette: expected rules or diff");
  int rules = lua_gettop(L);
  int n = (int)lua_objlen(L, rules);
  if (n > MAX_RULES)
    luaL_error(L, "fold: svg: palette: more than %d rules", MAX_RULES);
  for (int k = 0; k < n; k++) {
    struct rule *ru = &pal->rules[k];
    lua_rawgeti(L, rules, k + 1);
    int t = lua_gettop(L);
    if (!lua_istable(L, t))
      luaL_error(L, "fold: svg: palette: rule %d: expected a table", k + 1);
    lua_getfield(L, t, "kinds");
    const char *kinds = lua_tostring(L, -1);
    for (; kinds && *kinds; kinds++)
      if (*kinds >= 'a' && *kinds <= 'z')
        ru->kinds |= 1u << (*kinds - 'a');
    lua_pop(L, 1);
    lua_getfield(L, t, "contains");
    ru->needle = lua_tolstring(L, -1, &ru->needlen);
    if (ru->needle && !ru->needlen)
      ru->needle = NULL;
    lua_pop(L, 1);
    read_chan(L, t, "r", &ru->c[0]);
    read_chan(L, t, "g", &ru->c[1]);
    read_chan(L, t, "b", &ru->c[2]);
    lua_pop(L, 1);
  }
  pal->nrules = n;
  lua_pop(L, 1);
}

/* ---- profile:svg_frames ------------------------------------------------------ */

/* profile:svg_frames(opts) -> text, info
 * opts: width, xpad, frame_height, top, font_size, font_width, minwidth (px),
 *       inverted, unit, palette (a table, see read_palette), before (the
 *       profile a differential palette compares against) */
int pm_fold_svg_frames(lua_State *L)
{
  struct profile *p = pm_fold_check(L, 1);
  luaL_checktype(L, 2, LUA_TTABLE);
  struct layout ly;
  memset(&ly, 0, sizeof ly);
  ly.width = pm_fold_opt_num(L, 2, "width", 1200);
  ly.xpad = pm_fold_opt_num(L, 2, "xpad", 10);
  ly.frameh = pm_fold_opt_num(L, 2, "frame_height", 16);
  ly.top = pm_fold_opt_num(L, 2, "top", 60);
  ly.fontsize = pm_fold_opt_num(L, 2, "font_size", 12);
  ly.fontwidth = pm_fold_opt_num(L, 2, "font_width", 0.59);
  ly.minwidth = pm_fold_opt_num(L, 2, "minwidth", 0.1);
  ly.inverted = pm_fold_opt_bool(L, 2, "inverted");
  lua_getfield(L, 2, "unit");
  const char *unit = lua_tostring(L, -1);
  /* a plain word: it sits inside the XML title unescaped */
  size_t ui = 0;
  for (; unit && unit[ui] && ui + 1 < sizeof ly.unit; ui++) {
    unsigned char ch = (unsigned char)unit[ui];
    ly.unit[ui] = is_word(ch) || ch == ' ' || ch == '-' || ch == '/' ? (char)ch : '?';
  }
  ly.unit[ui] = 0;
  lua_pop(L, 1);
  if (!ly.unit[0])
    strcpy(ly.unit, "samples");
  struct palette pal;
  lua_getfield(L, 2, "palette");
  luaL_argcheck(L, lua_istable(L, -1), 2, "palette: expected a table");
  read_palette(L, lua_gettop(L), &pal);
  lua_pop(L, 1);
  ly.pal = &pal;
  ly.total = p->total;
  double plot = ly.width - 2 * ly.xpad;
  ly.scale = p->total ? plot / (double)p->total : 0;
  struct profile *incl = NULL;
  if (pal.diff) {
    lua_getfield(L, 2, "before");
    ly.before = pm_fold_check(L, -1);
    lua_pop(L, 1);
    ly.before_total = (double)ly.before->total;
    incl = calloc(1, sizeof *incl);
    if (!incl)
      return luaL_error(L, "fold: svg: out of memory");
    for (size_t i = 0; i < ly.before->n; i++) {
      const struct entry *e = &ly.before->ents[i];
      for (size_t k = 0; k <= e->len; k++)
        if ((k == e->len || e->key[k] == ';') && pm_profile_add(incl, e->key, k, e->count)) {
          pm_profile_destroy(incl);
          return luaL_error(L, "fold: svg: out of memory");
        }
    }
    ly.before_incl = incl;
    /* the largest |self delta| sets full colour */
    for (size_t i = 0; i < p->n; i++) {
      struct entry *be = pm_profile_find(ly.before, p->ents[i].key, p->ents[i].len, p->ents[i].hash);
      double a = p->total ? (double)p->ents[i].count / (double)p->total : 0;
      double b = be && ly.before_total > 0 ? (double)be->count / ly.before_total : 0;
      double d = a > b ? a - b : b - a;
      if (d > ly.maxdelta)
        ly.maxdelta = d;
    }
    for (size_t i = 0; i < ly.before->n; i++) {
      struct entry *ae = pm_profile_find(p, ly.before->ents[i].key, ly.before->ents[i].len, ly.before->ents[i].hash);
      if (!ae && ly.before_total > 0) {
        double d = (double)ly.before->ents[i].count / ly.before_total;
        if (d > ly.maxdelta)
          ly.maxdelta = d;
      }
    }
  }
  struct entry **v = sorted_frames(p);
  if (!v) {
    if (incl)
      pm_profile_destroy(incl);
    return luaL_error(L, "fold: svg: out of memory");
  }
  ly.pass = 1;
  int err = layout_pass(&ly, v, p->n);
  if (!err) {
    ly.pass = 2;
    err = layout_pass(&ly, v, p->n);
  }
  free(v);
  if (incl)
    pm_profile_destroy(incl);
  if (err) {
    buf_free(&ly.out);
    return luaL_error(L, "fold: svg: out of memory");
  }
  lua_pushlstring(L, ly.out.p ? ly.out.p : "", ly.out.n);
  buf_free(&ly.out);
  lua_createtable(L, 0, 6);
  lua_pushnumber(L, (lua_Number)ly.frames);
  lua_setfield(L, -2, "frames");
  lua_pushnumber(L, (lua_Number)ly.pruned_frames);
  lua_setfield(L, -2, "pruned_frames");
  lua_pushnumber(L, (lua_Number)ly.pruned_samples);
  lua_setfield(L, -2, "pruned_samples");
  lua_pushnumber(L, ly.frames ? ly.maxdepth : -1);
  lua_setfield(L, -2, "max_depth");
  lua_pushnumber(L, (lua_Number)p->total);
  lua_setfield(L, -2, "total");
  lua_pushnumber(L, ly.frames ? ly.top + (ly.maxdepth + 1) * ly.frameh : ly.top);
  lua_setfield(L, -2, "bottom");
  return 2;
}
