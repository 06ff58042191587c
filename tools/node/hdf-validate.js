#!/usr/bin/env node
// Check a Heimdall Data Format file with MITRE's own parser, inspecjs (the one Heimdall uses):
//   node hdf-validate.js FILE.json
// Exit 0 and one "ok" line when convertFile reads it as InSpec exec JSON (HDF); exit 1 and one
// line naming the first problem otherwise; exit 2 on usage.
// convertFile tries exec JSON, then exec-json-min, then profile JSON, and returns whichever
// parses: a broken results file may still pass as a profile. So the result must be exec JSON.
'use strict';
const fs = require('fs');
const {convertFile} = require('inspecjs');

function oneLine(text) {
  return String(text).replace(/\s+/g, ' ').slice(0, 400);
}

const file = process.argv[2];
if (process.argv.length !== 3) {
  console.error('usage: node hdf-validate.js FILE.json');
  process.exit(2);
}
let text;
try {
  text = fs.readFileSync(file, 'utf8');
} catch (e) {
  console.error(`hdf-validate: cannot read ${file}: ${e.code || e.message}`);
  process.exit(2);
}
let result;
try {
  result = convertFile(text, true);
} catch (e) {  // not JSON at all
  console.log(`REJECTED ${file}: ${oneLine(e.message)}`);
  process.exit(1);
}
const execJson = result['1_0_ExecJson'];
if (!execJson) {
  const why = result.errors && result.errors['1_0_ExecJson'];
  console.log(`REJECTED ${file}: not InSpec exec JSON: ${oneLine(why ? why.message : 'no reason given')}`);
  process.exit(1);
}
const controls = execJson.profiles.reduce((n, p) => n + p.controls.length, 0);
console.log(`ok ${file}: exec JSON, ${execJson.profiles.length} profile(s), ${controls} control(s)`);
