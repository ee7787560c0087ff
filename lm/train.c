// SPDX-License-Identifier: Apache-2.0
/* train.c — the training loop of `nsa train`: data, model, AdamW, evals, checkpoints, the
 * heartbeat (JSON Lines, docs/design.md §4) and the progress line.
 * Not the argument parsing (tools/cmd_train.c) nor the layers (lm/pass.c, lm/layers.c).
 * Invariants: a non-finite loss or gradient stops the run before the optimizer step and never
 * overwrites a checkpoint; a resumed run repeats the uninterrupted one bit for bit.
 */
#include "gpu.h"
#include "lm.h"

#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

typedef struct {
    FILE *hb;
    lm_json j;
    int64_t step;
    int64_t logged_until; /* resume: the heartbeat has step records up to here already */
    int drop;             /* the record being built repeats a logged step: not written */
} beat;

static double wall_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static double mono_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Starts a record with the fields every record has: ts, iso, pid, rank, step, msg. */
static void rec_begin(beat *b, const char *msg) {
    const double ts = wall_s();
    const time_t sec = (time_t)ts;
    struct tm tm;
    gmtime_r(&sec, &tm);
    char iso[40], t[32];
    strftime(t, sizeof t, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(iso, sizeof iso, "%s.%03dZ", t, (int)((ts - (double)sec) * 1000.0));
    lm_json_begin(&b->j);
    lm_json_num(&b->j, "ts", ts);
    lm_json_str(&b->j, "iso", iso);
    lm_json_int(&b->j, "pid", (int64_t)getpid());
    lm_json_int(&b->j, "rank", 0);
    lm_json_int(&b->j, "step", b->step);
    lm_json_str(&b->j, "msg", msg);
    /* after a resume, the records of a step the heartbeat already has are left out: the run
     * repeats those steps bit for bit, so the lines there already say what these would */
    b->drop = b->step <= b->logged_until &&
              (!strcmp(msg, "progress") || !strcmp(msg, "eval") || !strcmp(msg, "checkpoint"));
}

static void rec_end(beat *b) {
    const char *line = lm_json_end(&b->j);
    if (line && b->hb && !b->drop) {
        fputs(line, b->hb);
        fflush(b->hb);
    }
}

static void stop_record(beat *b, const char *reason, const char *detail) {
    rec_begin(b, "stop");
    lm_json_str(&b->j, "reason", reason);
    if (detail) lm_json_str(&b->j, "detail", detail);
    rec_end(b);
}

static int mkdirs(const char *path, char *err, size_t n) {
    char p[600];
    snprintf(p, sizeof p, "%s", path);
    for (char *s = p + 1;; s++) {
        if (*s == '/' || !*s) {
            char c = *s;
            *s = 0;
            if (mkdir(p, 0777) && errno != EEXIST) {
                snprintf(err, n, "out: cannot create %s: %s", p, strerror(errno));
                return -1;
            }
            *s = c;
            if (!c) break;
        }
    }
    char probe[700];
    snprintf(probe, sizeof probe, "%s/.write-test.%ld", path, (long)getpid());
    FILE *f = fopen(probe, "w");
    if (!f) {
        snprintf(err, n, "out: %s is not writable: %s", path, strerror(errno));
        return -1;
    }
    fclose(f);
    unlink(probe);
    return 0;
}

/* The largest step of the progress, eval and checkpoint records in the heartbeat at path;
 * -1 when there is none (or no file). */
static int64_t logged_until(const char *path) {
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    char line[4096];
    int64_t max = -1;
    while (fgets(line, sizeof line, f)) {
        const char *s = strstr(line, "\"step\":");
        if (!s || !(strstr(line, "\"msg\":\"progress\"") || strstr(line, "\"msg\":\"eval\"") ||
                    strstr(line, "\"msg\":\"checkpoint\"")))
            continue;
        const long long v = strtoll(s + 7, NULL, 10);
        if (v > max) max = v;
    }
    fclose(f);
    return max;
}

/* Removes the temporary files a killed save left in out: <name>.tmp.<pid> of our own files
 * (model.safetensors, config.txt) and .write-test.<pid>, only when that pid is not alive. */
static void remove_orphans(const char *out) {
    static const char *const ours[] = {"model.safetensors.tmp.", "config.txt.tmp.", ".write-test."};
    DIR *d = opendir(out);
    if (!d) return;
    for (struct dirent *e; (e = readdir(d));) {
        for (size_t i = 0; i < sizeof ours / sizeof ours[0]; i++) {
            const size_t k = strlen(ours[i]);
            if (strncmp(e->d_name, ours[i], k) || !e->d_name[k]) continue;
            char *end;
            errno = 0;
            const long pid = strtol(e->d_name + k, &end, 10);
            if (*end || errno || pid <= 0 || pid == (long)getpid()) continue;
            if (kill((pid_t)pid, 0) == 0 || errno != ESRCH) continue; /* alive, or not ours to ask */
            char p[1200];
            snprintf(p, sizeof p, "%s/%s", out, e->d_name);
            unlink(p);
        }
    }
    closedir(d);
}

static int write_config(const lm_train_config *c, char *err, size_t n) {
    char path[600], tmp[640];
    snprintf(path, sizeof path, "%s/config.txt", c->out);
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
    FILE *f = fopen(tmp, "w");
    if (!f) {
        snprintf(err, n, "%s: %s", tmp, strerror(errno));
        return -1;
    }
    fprintf(f, "# written by nsa train; nsa train --out %s --resume reads it\n", c->out);
    lm_config_write(c, f);
    int ok = fflush(f) == 0 && fsync(fileno(f)) == 0;
    ok = fclose(f) == 0 && ok;
    if (!ok || rename(tmp, path)) {
        snprintf(err, n, "%s: %s", path, strerror(errno));
        unlink(tmp);
        return -1;
    }
    return 0;
}

/* One progress line: losses in bits per byte (nats / ln 2), tokens/s, MFU where the peak is
 * known (the GPU), the time left. NaN fields print as "-". */
typedef struct {
    int64_t done;
    int steps;
    double loss, val, tps, mfu, eta; /* loss, val in nats */
} progress;

static void fmt(char *buf, size_t n, const char *f, double v) {
    if (isfinite(v)) snprintf(buf, n, f, v);
    else snprintf(buf, n, "-");
}

static void progress_line(int tty, const progress *p) {
    char bar[33], loss[32], val[32], tps[32], mfu[48] = "", eta[32];
    const int fill = (int)(32 * p->done / (p->steps > 0 ? p->steps : 1));
    for (int i = 0; i < 32; i++) bar[i] = i < fill ? '#' : '.';
    bar[32] = 0;
    fmt(loss, sizeof loss, "%.3f", p->loss / log(2.0));
    fmt(val, sizeof val, "%.3f", p->val / log(2.0));
    fmt(tps, sizeof tps, "%.0f", p->tps);
    if (isfinite(p->mfu)) snprintf(mfu, sizeof mfu, "  MFU %.1f%%", 100.0 * p->mfu);
    fmt(eta, sizeof eta, "%.0fs", p->eta);
    fprintf(stderr, "%s[%s] step %lld/%d  bpb train %s val %s  %s tok/s%s  eta %s%s",
            tty ? "\r" : "", bar, (long long)p->done, p->steps, loss, val, tps, mfu, eta,
            tty ? "   " : "\n");
    fflush(stderr);
}

/* Mean validation loss over the fixed validation batches. */
static int evaluate(lm_model *m, const lm_corpus *cor, const lm_train_config *c, uint8_t *x,
                    uint8_t *y, uint8_t *bound, double *val, char *err, size_t n) {
    double s = 0.0;
    for (int k = 0; k < c->eval_batches; k++) {
        float l;
        lm_val_batch(cor, k, c->eval_batches, c->batch, c->seq_len, x, y, bound);
        if (lm_model_set_docs(m, cor->starts ? bound : NULL, c->batch, c->seq_len, err, n) ||
            lm_forward(m, x, y, c->batch, c->seq_len, NULL, &l, err, n))
            return -1;
        s += l;
    }
    *val = s / c->eval_batches;
    return 0;
}

/* The gradient of one optimizer step into m->grads: the global batch x, y, bound (batch ·
 * grad_accum rows of lm_batch) as grad_accum micro-batches of `batch` rows, in order, each
 * backward adding to the last with the global batch's 1/rows (lm_backward_acc). *loss is the
 * global batch's mean (each micro-batch's mean weighted by its loss rows); NaN and no gradient
 * when one is not finite. The gate statistics become the means over the micro-batches. */
static int step_grads(lm_model *m, const lm_corpus *cor, const lm_train_config *c,
                      const uint8_t *x, const uint8_t *y, const uint8_t *bound, float *loss,
                      char *err, size_t n) {
    const int64_t per = (int64_t)c->batch * c->seq_len;
    int64_t rows = per * c->grad_accum;
    if (cor->starts) /* a document's last byte has no loss (lm_model_set_docs) */
        for (int64_t r = 0; r < per * c->grad_accum; r++) rows -= bound[r];
    double sum = 0.0, ent = 0.0, col = 0.0, sh[3] = {0, 0, 0};
    for (int i = 0; i < c->grad_accum; i++) {
        const int64_t o = i * per;
        float li;
        if (lm_model_set_docs(m, cor->starts ? bound + o : NULL, c->batch, c->seq_len, err, n) ||
            lm_forward(m, x + o, y + o, c->batch, c->seq_len, NULL, &li, err, n))
            return -1;
        if (!isfinite(li)) {
            *loss = li;
            return 0;
        }
        int64_t ri = per;
        if (cor->starts)
            for (int64_t r = 0; r < per; r++) ri -= bound[o + r];
        sum += (double)li * (double)ri;
        ent += m->gate_entropy_mean;
        col += m->gate_collapse_frac;
        for (int b = 0; b < 3; b++) sh[b] += m->gate_share[b];
        if (lm_backward_acc(m, x + o, rows, i > 0, err, n)) return -1;
    }
    *loss = rows > 0 ? (float)(sum / (double)rows) : 0.0f;
    m->gate_entropy_mean = ent / c->grad_accum;
    m->gate_collapse_frac = col / c->grad_accum;
    for (int b = 0; b < 3; b++) m->gate_share[b] = sh[b] / c->grad_accum;
    return 0;
}

static void eval_record(beat *b, double val, const lm_train_config *c) {
    rec_begin(b, "eval");
    lm_json_num(&b->j, "val_loss", val);
    lm_json_num(&b->j, "ppl", exp(val));
    lm_json_num(&b->j, "bits_per_byte", val / log(2.0));
    lm_json_int(&b->j, "val_tokens", (int64_t)c->eval_batches * c->batch * c->seq_len);
    rec_end(b);
}

int lm_train(const lm_train_config *c, const lm_train_opts *o) {
    char err[1024] = "";
    lm_corpus cor = {0};
    lm_model m;
    memset(&m, 0, sizeof m);
    nsa_context *ctx = NULL;
    float *mom = NULL, *vel = NULL;   /* moments in the backend's memory      */
    float *hmom = NULL, *hvel = NULL; /* host copies for checkpoints (GPU)    */
    const lm_backend *be = &lm_cpu_backend;
    uint8_t *x = NULL, *y = NULL, *bound = NULL;
    lm_loader *L = NULL;
    beat b = {0};
    int rc = 1;
    const int tty = isatty(2) && !o->quiet;

    if (lm_config_check(c, err, sizeof err)) goto fail;
    const char *data = c->data[0] ? c->data : lm_default_corpus();
    if (!data) {
        snprintf(err, sizeof err, "data: the built-in corpus was not found (installed "
                                  "../share/nsa/kjv.txt, build tree); pass --data FILE");
        goto fail;
    }
    if (lm_corpus_load(&cor, data, c->seq_len, err, sizeof err)) goto fail;
    if (c->documents[0] && lm_corpus_documents(&cor, c->documents, err, sizeof err)) goto fail;
    if (nsa_context_create(&ctx, err, sizeof err) != NSA_OK) goto fail;
    if (c->threads > 0) nsa_context_set_threads(ctx, c->threads);
    lm_blas_threads(c->threads);
    if (!strcmp(c->device, "cuda") &&
        !(be = lm_cuda_backend(!strcmp(c->precision, "f32"), err, sizeof err)))
        goto fail;
    if (lm_model_create_on(&m, &c->m, ctx, be, c->seed, err, sizeof err)) goto fail;
    mom = be->alloc(m.nparams * sizeof(float));
    vel = be->alloc(m.nparams * sizeof(float));
    const int on_host = be->device == NSA_DEVICE_CPU;
    hmom = on_host ? mom : calloc(m.nparams, sizeof(float));
    hvel = on_host ? vel : calloc(m.nparams, sizeof(float));
    const int gbatch = c->batch * c->grad_accum; /* sequences per optimizer step */
    x = malloc((size_t)gbatch * c->seq_len);
    y = malloc((size_t)gbatch * c->seq_len);
    bound = malloc((size_t)gbatch * c->seq_len);
    if (!mom || !vel || !hmom || !hvel || !x || !y || !bound) {
        snprintf(err, sizeof err, "out of memory");
        goto fail;
    }
    char ckpt[600], hbpath[600];
    snprintf(ckpt, sizeof ckpt, "%s/model.safetensors", c->out);
    snprintf(hbpath, sizeof hbpath, "%s/heartbeat.jsonl", c->out);
    int64_t step0 = 0;
    lm_ckpt_meta rmeta;
    memset(&rmeta, 0, sizeof rmeta);
    if (o->resume) {
        lm_ckpt_meta meta;
        if (lm_ckpt_load(o->resume, &m, hmom, hvel, &meta, err, sizeof err)) goto fail;
        rmeta = meta;
        if (!on_host) {
            be->upload(mom, hmom, m.nparams * sizeof(float));
            be->upload(vel, hvel, m.nparams * sizeof(float));
        }
        if (meta.note[0] && !o->quiet) fprintf(stderr, "nsa train: %s\n", meta.note);
        /* weights only: a fine-tuning run from step 0, on any seed and corpus */
        if (!meta.weights_only && meta.seed != c->seed) {
            snprintf(err, sizeof err, "seed: checkpoint has %llu, this run has %llu",
                     (unsigned long long)meta.seed, (unsigned long long)c->seed);
            goto fail;
        }
        if (!meta.weights_only && meta.data_hash != cor.hash) {
            snprintf(err, sizeof err, "data: %s is not the corpus the checkpoint was trained on",
                     data);
            goto fail;
        }
        step0 = meta.step;
    }
    /* the output directory only now: a bad input above leaves nothing behind */
    if (mkdirs(c->out, err, sizeof err)) goto fail;
    remove_orphans(c->out);
    /* a new run leaves no checkpoint of an old one beside its new heartbeat and config */
    if (!o->resume && unlink(ckpt) && errno != ENOENT) {
        snprintf(err, sizeof err, "%s: cannot remove the old checkpoint: %s", ckpt, strerror(errno));
        goto fail;
    }
    /* a resumed run continues the heartbeat after what it already logged; a fine-tuning run
     * from weights restarts the step count, so all its steps are new records */
    b.logged_until = o->resume && !rmeta.weights_only ? logged_until(hbpath) : -1;
    b.hb = fopen(hbpath, o->resume ? "a" : "w");
    if (!b.hb) {
        snprintf(err, sizeof err, "%s: %s", hbpath, strerror(errno));
        goto fail;
    }
    if (write_config(c, err, sizeof err)) goto fail;
    b.step = step0;
    char cfgs[1024];
    lm_model_config_str(&c->m, cfgs, sizeof cfgs);
    rec_begin(&b, "boot");
    lm_json_str(&b.j, "data", data);
    lm_json_int(&b.j, "data_bytes", (int64_t)cor.len);
    lm_json_int(&b.j, "params", (int64_t)m.nparams);
    lm_json_str(&b.j, "model", cfgs);
    lm_json_int(&b.j, "seq_len", c->seq_len);
    lm_json_int(&b.j, "batch", c->batch);
    lm_json_int(&b.j, "grad_accum", c->grad_accum);
    lm_json_int(&b.j, "steps", c->steps);
    lm_json_str(&b.j, "resume", o->resume ? o->resume : "");
    lm_json_str(&b.j, "backend", be->name);
    lm_json_str(&b.j, "version", nsa_version_string());
    lm_json_str(&b.j, "commit", nsa_version_commit());
    const double flops_tok = lm_flops_per_token(&c->m, c->seq_len);
    double peak = NAN;
    if (!on_host && lm_cuda_peak_flops(!strcmp(c->precision, "f32"), &peak)) peak = NAN;
    lm_json_num(&b.j, "flops_per_token", flops_tok);
    if (!on_host) lm_json_num(&b.j, "peak_flops", peak);
    lm_json_str(&b.j, "documents", c->documents);
    lm_json_int(&b.j, "docs", cor.ndocs);
    rec_end(&b);
    if (o->resume) {
        rec_begin(&b, "resume");
        lm_json_str(&b.j, "checkpoint", o->resume);
        lm_json_int(&b.j, "logged_until", b.logged_until);
        lm_json_int(&b.j, "weights_only", rmeta.weights_only);
        if (rmeta.note[0]) lm_json_str(&b.j, "note", rmeta.note);
        rec_end(&b);
    }
    if (!o->quiet)
        fprintf(stderr, "nsa train: %zu parameters, %d layers, dim %d, corpus %s (%zu bytes), "
                        "out %s%s\n", m.nparams, c->m.n_layer, c->m.dim, data, cor.len, c->out,
                o->resume ? " (resumed)" : "");

    L = lm_loader_start(&cor, c->seed, step0, gbatch, c->seq_len);
    if (!L) {
        snprintf(err, sizeof err, "cannot start the loader thread");
        goto fail;
    }
    const double ln2 = log(2.0);
    double last_val = NAN;
    lm_ckpt_meta meta = {0, c->seed, cor.hash, "", 0, ""};
    lm_model_config_str(&c->m, meta.config, sizeof meta.config);
    if (step0 == 0) { /* the starting point of the validation curve */
        if (evaluate(&m, &cor, c, x, y, bound, &last_val, err, sizeof err)) goto fail;
        eval_record(&b, last_val, c);
    }
    if (!o->quiet) { /* a first line at once, not after log_every steps */
        const progress p0 = {step0, c->steps, NAN, last_val, NAN, NAN, NAN};
        progress_line(tty, &p0);
    }
    double t_int = mono_s(), fetch_int = 0.0, t_start = mono_s();
    int64_t toks_int = 0;
    for (int64_t step = step0; step < c->steps; step++) {
        float loss;
        fetch_int += lm_loader_next(L, x, y, bound);
        if (step_grads(&m, &cor, c, x, y, bound, &loss, err, sizeof err)) goto fail;
        float norm = NAN;
        if (isfinite(loss)) norm = be->clip_grads(m.grads, m.nparams, c->clip);
        if (!isfinite(loss) || !isfinite(norm)) {
            b.step = step;
            snprintf(err, sizeof err, "%s is not finite at step %lld; stopped before the "
                     "optimizer step, the last checkpoint (%s) is kept",
                     isfinite(loss) ? "the gradient norm" : "the loss", (long long)step, ckpt);
            rec_begin(&b, "progress");
            b.drop = 0; /* what stopped this run: new even at a step the heartbeat has */
            lm_json_num(&b.j, "loss", loss);
            lm_json_num(&b.j, "grad_norm", norm);
            rec_end(&b);
            stop_record(&b, "nonfinite", err);
            fprintf(stderr, "%snsa train: %s\n", tty ? "\n" : "", err);
            goto out;
        }
        const float lr = lm_lr_at(c, (int)step);
        lm_adamw(&m, mom, vel, (int)step + 1, lr, c);
        const int64_t done = step + 1;
        b.step = done;
        toks_int += (int64_t)gbatch * c->seq_len;
        const int last = done == c->steps;
        const int stopping = (o->stop && *o->stop) || (o->stop_after > 0 && done >= o->stop_after);
        const double t = mono_s(), dt = t - t_int;
        const double tps = dt > 0 ? (double)toks_int / dt : NAN;
        const progress pl = {done, c->steps, loss, last_val, tps, tps * flops_tok / peak,
                             (t - t_start) / (double)(done - step0) * (double)(c->steps - done)};
        if (done % c->log_every == 0 || last || stopping) {
            nsa_counters cn;
            memset(&cn, 0, sizeof cn);
            nsa_context_counters(ctx, &cn);
            rec_begin(&b, "progress");
            lm_json_num(&b.j, "loss", loss);
            lm_json_num(&b.j, "bits_per_byte", loss / ln2);
            lm_json_num(&b.j, "lr", lr);
            lm_json_num(&b.j, "grad_norm", norm);
            lm_json_num(&b.j, "toks_per_s", tps);
            if (!on_host) lm_json_num(&b.j, "mfu", pl.mfu);
            lm_json_num(&b.j, "dt_fetch_s", fetch_int);
            lm_json_num(&b.j, "gate_entropy_mean", m.gate_entropy_mean);
            lm_json_num(&b.j, "gate_collapse_frac", m.gate_collapse_frac);
            static const char *const branches[3] = {"cmp", "sel", "win"};
            lm_json_obj(&b.j, "gate_branch_shares", branches, m.gate_share, 3);
            lm_json_int(&b.j, "fallback_nonfinite", cn.fallback_nonfinite);
            lm_json_int(&b.j, "fallback_error", cn.fallback_error);
            lm_json_int(&b.j, "fallback_unsupported", cn.fallback_unsupported);
            lm_json_int(&b.j, "nsa_calls", cn.calls);
            double ga, gp, gr;
            if (!on_host && lm_cuda_mem_mib(&ga, &gp, &gr) == 0) {
                lm_json_num(&b.j, "gpu_mem_alloc", ga);
                lm_json_num(&b.j, "gpu_mem_reserved", gr);
            }
            rec_end(&b);
            if (!o->quiet) progress_line(tty, &pl);
            t_int = t;
            fetch_int = 0.0;
            toks_int = 0;
        } else if (done == step0 + 1 && !o->quiet) {
            progress_line(tty, &pl); /* the first step's line; its record waits for log_every */
        }
        const double t_aside = mono_s(); /* evals and checkpoints are not training time */
        if (done % c->eval_every == 0 || last) {
            double val;
            if (evaluate(&m, &cor, c, x, y, bound, &val, err, sizeof err)) goto fail;
            eval_record(&b, val, c);
            last_val = val;
            if (!isfinite(val)) {
                snprintf(err, sizeof err, "the validation loss is not finite at step %lld; the "
                         "last checkpoint (%s) is kept", (long long)done, ckpt);
                stop_record(&b, "nonfinite", err);
                fprintf(stderr, "%snsa train: %s\n", tty ? "\n" : "", err);
                goto out;
            }
        }
        if (done % c->ckpt_every == 0 || last || stopping) {
            meta.step = done;
            if (!on_host) {
                lm_model_pull(&m);
                be->download(hmom, mom, m.nparams * sizeof(float));
                be->download(hvel, vel, m.nparams * sizeof(float));
                if (be->sync(err, sizeof err)) goto fail;
            }
            if (lm_ckpt_save(ckpt, &m, hmom, hvel, &meta, err, sizeof err)) goto fail;
            rec_begin(&b, "checkpoint");
            lm_json_str(&b.j, "path", ckpt);
            rec_end(&b);
        }
        t_int += mono_s() - t_aside;
        if (stopping) {
            stop_record(&b, "interrupted", "checkpoint saved; continue with --resume");
            if (!o->quiet)
                fprintf(stderr, "%snsa train: interrupted after step %lld; checkpoint %s saved; "
                                "continue with: nsa train --out %s --resume\n",
                        tty ? "\n" : "", (long long)done, ckpt, c->out);
            rc = 0;
            goto out;
        }
    }
    stop_record(&b, "done", NULL);
    if (tty && step0 < c->steps) fputc('\n', stderr);
    if (!o->quiet && step0 >= c->steps)
        fprintf(stderr, "nsa train: the checkpoint is at step %lld already (steps = %d); nothing "
                        "to do (raise --steps to continue)\n", (long long)step0, c->steps);
    else if (!o->quiet)
        fprintf(stderr, "nsa train: done: %d steps, final val loss %.4f (%.3f bits/byte), "
                        "checkpoint %s\n", c->steps, last_val, last_val / ln2, ckpt);
    rc = 0;
    goto out;
fail:
    if (b.hb) stop_record(&b, "error", err);
    fprintf(stderr, "%snsa train: %s\n", tty ? "\n" : "", err);
    rc = 1;
out:
    lm_loader_stop(L);
    if (b.hb) fclose(b.hb);
    lm_json_free(&b.j);
    free(x);
    free(y);
    free(bound);
    if (hmom != mom) free(hmom);
    if (hvel != vel) free(hvel);
    if (mom) be->release(mom);
    if (vel) be->release(vel);
    lm_model_destroy(&m);
    nsa_context_destroy(ctx);
    lm_corpus_free(&cor);
    return rc;
}
