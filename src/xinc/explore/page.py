"""The explorer's HTML: one file, inline CSS and JS, no network. The data is JSON inside a
<script type="application/json"> element with '<', '>' and '&' escaped, and every value reaches the page
through textContent, so nothing read from a run directory can inject markup or script."""

from __future__ import annotations

import html
import json
from typing import Any

from xinc import __version__


def safe_json(obj: Any) -> str:
    """JSON that cannot close its <script> element or start markup (</script>, <!--, U+2028)."""
    text = json.dumps(obj, separators=(",", ":"), allow_nan=False)
    for a, b in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"), ("\u2028", "\\u2028"), ("\u2029", "\\u2029")):
        text = text.replace(a, b)
    return text


CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:0;color:#222;background:#fafafa}
header{padding:10px 16px;background:#fff;border-bottom:1px solid #ddd}
h1{font-size:18px;margin:0 0 4px}
#budget{color:#555;font-size:12px}
.controls{display:flex;gap:14px;align-items:center;flex-wrap:wrap;padding:8px 16px}
main{display:grid;grid-template-columns:minmax(300px,1fr) minmax(320px,1fr);gap:14px;padding:0 16px 16px}
.card{background:#fff;border:1px solid #ddd;border-radius:6px;padding:10px}
.card h2{font-size:14px;margin:0 0 6px}
canvas{image-rendering:pixelated;width:100%;border:1px solid #ccc;cursor:crosshair;display:block}
#bars .row{display:grid;grid-template-columns:150px 1fr 80px;align-items:center;gap:6px;font-size:12px;
  cursor:pointer;padding:1px 0}
#bars .row:hover{background:#f0f4ff}
.track{position:relative;height:14px;background:#f3f3f3}
.bar{position:absolute;top:0;height:14px}
.pos{background:#c0392b}.neg{background:#2e6fb7}
.mid{position:absolute;left:50%;top:0;bottom:0;width:1px;background:#888}
table{border-collapse:collapse;font-size:12px;width:100%}
td,th{border-bottom:1px solid #eee;padding:2px 4px;text-align:left}
#neuronlist button{margin:2px;font-size:12px}
.note{color:#666;font-size:12px}
"""

JS = r"""
(function(){
const status=document.getElementById('xinc-explorer-status');
const errors=[];
window.addEventListener('error',e=>{errors.push(String(e.message));status.dataset.errors=JSON.stringify(errors);});
const D=JSON.parse(document.getElementById('xinc-data').textContent);
const $=id=>document.getElementById(id);
function bytes(b64){const s=atob(b64);const u=new Uint8Array(s.length);
  for(let i=0;i<s.length;i++)u[i]=s.charCodeAt(i);return u.buffer;}
const cache=new Map();
function arr(b64,T){const key=T.name+b64.length+':'+b64.slice(0,32)+b64.slice(-32);
  if(!cache.has(key))cache.set(key,new T(bytes(b64)));return cache.get(key);}
const LUT={signed:new Uint8Array(bytes(D.luts.signed)),heat:new Uint8Array(bytes(D.luts.heat))};
const st={m:0,l:0,f:0,px:null,neuron:null};
function model(){return D.models[st.m];}
function layer(){return model().layers[st.l];}
function frame(){return model().frames[st.f];}
function txt(el,s){el.textContent=s;return el;}
function mk(tag,cls,s){const e=document.createElement(tag);if(cls)e.className=cls;
  if(s!==undefined)e.textContent=s;return e;}
function option(sel,items){sel.replaceChildren(...items.map((t,i)=>{const o=mk('option','',t);o.value=i;return o;}));}
function neuronName(L,k){if(L.c_out&&L.neuron_index.startsWith('k = c_in*'))
  return 'k='+k+' (in '+Math.floor(k/L.c_out)+', out '+(k%L.c_out)+')';return 'k='+k;}
function paint(cv,h,w,fn){cv.width=w;cv.height=h;const c=cv.getContext('2d');const im=c.createImageData(w,h);
  for(let i=0;i<h*w;i++){const [r,g,b]=fn(i);im.data[4*i]=r;im.data[4*i+1]=g;im.data[4*i+2]=b;im.data[4*i+3]=255;}
  c.putImageData(im,0,0);return c;}
function lut(L,v){const j=Math.max(0,Math.min(255,Math.round(v*255)));return [L[3*j],L[3*j+1],L[3*j+2]];}
function marker(c,cv){if(!st.px)return;const [y,x]=st.px;c.strokeStyle='#0f0';c.lineWidth=0.5;
  c.strokeRect(x-0.5,y-0.5,2,2);}
function drawSource(){const L=layer();const [h,w]=L.size;const img=new Image();const cv=$('source');
  img.onload=()=>{cv.width=w;cv.height=h;const c=cv.getContext('2d');c.imageSmoothingEnabled=true;
    c.drawImage(img,0,0,w,h);marker(c,cv);};img.src=model().images[String(frame())];}
function drawHeat(){const L=layer();const [h,w]=L.size;const F=L.frames[String(frame())];
  const q=arr(F.heat,Int16Array);let m=0;for(const v of q)m=Math.max(m,v);m=m||1;
  const c=paint($('heat'),h,w,i=>lut(LUT.heat,q[i]/m));marker(c,$('heat'));
  txt($('heatmax'),'max '+(m*F.heat_scale).toPrecision(3));}
function topk(y,x){const L=layer();const F=L.frames[String(frame())];const k=L.topk;const w=L.size[1];
  const T=L.idx_type==='uint32'?Uint32Array:Uint16Array;const idx=arr(F.idx,T);const val=arr(F.val,Int16Array);
  const p=(y*w+x)*k;const out=[];for(let j=0;j<k;j++)out.push([idx[p+j],val[p+j]*F.val_scale]);
  const share=arr(F.share,Uint8Array)[y*w+x]/255;const heat=arr(F.heat,Int16Array)[y*w+x]*F.heat_scale;
  return {out,share,heat};}
function drawBars(){const box=$('bars');box.replaceChildren();
  if(!st.px){txt($('pixel'),'click or hover a pixel');return;}
  const [y,x]=st.px;const L=layer();const r=topk(y,x);const lim=Math.max(...r.out.map(e=>Math.abs(e[1])),1e-30);
  box.dataset.pixel=y+','+x;box.dataset.values=JSON.stringify(r.out);
  txt($('pixel'),'pixel (row '+y+', col '+x+') of '+L.size[0]+'x'+L.size[1]+' | sum |C| '+r.heat.toPrecision(3)+
    ' | top '+L.topk+' neurons hold '+(100*r.share).toFixed(1)+'% of it');
  const embedded=new Set(L.neurons.map(n=>n.k));
  for(const [k,v] of r.out){const row=mk('div','row');
    const name=mk('span','',neuronName(L,k)+(embedded.has(k)?'':' *'));
    const tr=mk('div','track');const b=mk('div','bar '+(v>=0?'pos':'neg'));const f=Math.abs(v)/lim*50;
    b.style.width=f+'%';b.style.left=(v>=0?50:50-f)+'%';tr.append(mk('div','mid'),b);
    row.append(name,tr,mk('span','',v.toPrecision(3)));row.dataset.neuron=k;row.onclick=()=>pickNeuron(k);box.append(row);}}
function pickNeuron(k){st.neuron=k;drawNeuron();}
function drawNeuron(){const L=layer();const k=st.neuron;const info=$('ninfo');info.replaceChildren();
  const cv=$('nmap');if(k===null){txt($('ntitle'),'click a bar or a neuron below');return;}
  txt($('ntitle'),L.name+' neuron '+neuronName(L,k));const n=L.neurons.find(e=>e.k===k);
  if(!n){cv.width=1;cv.height=1;info.append(mk('p','note','This neuron is not among the '+L.neurons.length+
    ' whose maps are embedded (budget): the seeded sample and the strongest by sum |C|.'));}
  else{const q=arr(n.maps[String(frame())],Int8Array);const [h,w]=L.size;
    paint(cv,h,w,i=>lut(LUT.signed,0.5+q[i]/254));
    info.append(mk('p','note','signed C, fixed scale +-'+(127*n.scale).toPrecision(3)+' over the embedded frames'+
      (n.sampled?'; in the seeded sample (same neurons as the videos and report)':'')));}
  const nums=(model().numbers[L.name]||{})[String(k)];const t=mk('table');
  if(nums){for(const [aid,vals] of Object.entries(nums)){for(const [key,v] of Object.entries(vals)){
    const tr=mk('tr');const s=typeof v!=='number'?String(v):Number.isInteger(v)?String(v):v.toPrecision(3);
    tr.append(mk('th','',aid.toUpperCase()+' '+key),mk('td','',s));
    t.append(tr);}}}
  else t.append(mk('tr','',''),mk('caption','note','no A3/A5/A6 numbers recorded for this neuron in the run'));
  info.append(t);}
function neuronList(){const box=$('neuronlist');box.replaceChildren();const L=layer();
  for(const n of L.neurons){const b=mk('button','',(n.sampled?'★ ':'')+neuronName(L,n.k));
    b.onclick=()=>pickNeuron(n.k);b.dataset.neuron=n.k;box.append(b);}}
function redraw(){const M=model();txt($('framelabel'),'frame '+frame()+' ('+(st.f+1)+'/'+M.frames.length+')');
  drawSource();drawHeat();drawBars();drawNeuron();const L=layer();
  txt($('layerinfo'),L.name+': '+L.num_neurons+' neurons, rule '+L.rule+(L.exact?' (exact)':' (approximate)')+
    ', maps pooled to '+L.size[0]+'x'+L.size[1]);}
function onPixel(ev,click){const cv=ev.currentTarget;const r=cv.getBoundingClientRect();const [h,w]=layer().size;
  const x=Math.min(w-1,Math.max(0,Math.floor((ev.clientX-r.left)/r.width*w)));
  const y=Math.min(h-1,Math.max(0,Math.floor((ev.clientY-r.top)/r.height*h)));
  if(!click&&st.pinned)return;st.px=[y,x];if(click)st.pinned=true;drawBars();drawHeat();drawSource();}
for(const id of ['source','heat']){$(id).addEventListener('click',e=>onPixel(e,true));
  $(id).addEventListener('mousemove',e=>onPixel(e,false));}
$('model').onchange=e=>{st.m=+e.target.value;st.l=0;st.f=0;st.px=null;st.neuron=null;st.pinned=false;setup();};
$('layer').onchange=e=>{st.l=+e.target.value;st.px=null;st.neuron=null;st.pinned=false;neuronList();redraw();};
$('frame').oninput=e=>{st.f=+e.target.value;redraw();};
function setup(){const M=model();option($('layer'),M.layers.map(L=>L.name));$('layer').value=st.l;
  $('frame').max=M.frames.length-1;$('frame').value=st.f;txt($('modelinfo'),M.summary);neuronList();redraw();}
option($('model'),D.models.map(M=>M.name));txt($('budget'),D.budget.text);setup();
status.dataset.ready='1';status.dataset.errors=JSON.stringify(errors);
})();
"""

BODY = """
<header><h1></h1><div id="budget"></div></header>
<div class="controls">
 <label>model <select id="model"></select></label>
 <label>layer <select id="layer"></select></label>
 <label>frame <input id="frame" type="range" min="0" max="0" value="0"></label> <span id="framelabel"></span>
 <span id="modelinfo" class="note"></span>
</div>
<main>
 <section class="card"><h2>Pick a pixel (hover, or click to pin)</h2>
  <div class="note" id="layerinfo"></div>
  <p class="note">source frame</p><canvas id="source"></canvas>
  <p class="note">heat map: sum over neurons of |C| (<span id="heatmax"></span>)</p><canvas id="heat"></canvas>
 </section>
 <section class="card"><h2>Top contributing neurons at the pixel (signed)</h2>
  <div id="pixel" class="note"></div><div id="bars"></div>
  <p class="note">* map not embedded (outside the budget). Click a bar for the neuron.</p>
  <h2 id="ntitle"></h2><canvas id="nmap"></canvas><div id="ninfo"></div>
  <h2>Neurons with embedded maps (★ = seeded sample)</h2><div id="neuronlist"></div>
 </section>
</main>
<div id="xinc-explorer-status" data-ready="0" data-errors="[]" hidden></div>
"""


def render(payload: dict[str, Any], title: str) -> str:
    """The whole page as one string."""
    head = (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
            f'<meta name="generator" content="xinc {html.escape(__version__)} explorer">'
            f'<meta name="viewport" content="width=device-width,initial-scale=1">'
            f"<title>{html.escape(title)}</title><style>{CSS}</style></head><body>")
    body = BODY.replace("<h1></h1>", f"<h1>{html.escape(title)}</h1>")
    data = f'<script type="application/json" id="xinc-data">{safe_json(payload)}</script>'
    return f"{head}{body}{data}<script>{JS}</script></body></html>\n"
