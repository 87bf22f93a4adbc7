-- basic + the block I/O tracer (latency and size histograms per disk/op).
return {
  extends = 'basic',
  summary = 'basic + block I/O latency histograms (io tracer)',
  tracers = { { 'io' } },
}
