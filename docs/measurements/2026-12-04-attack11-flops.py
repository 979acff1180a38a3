# matrix multiply-adds (MACs) per run: forward + backward (3x forward's products), 5 timed steps,
# attention scores counted full S x S (CPU math path; conservative: the larger total).
def shape(H,I,L,Nq,Nkv,V,B,S):
    D=H//Nq; KV=Nkv*D; T=B*S
    attnw=H*(H+2*KV)+H*H; mlpw=3*H*I; head=V*H
    scores=2*S*Nq*D   # QK^T and AV per token per layer, full S
    fwd=T*(L*(attnw+mlpw+scores)+head)
    return dict(H=H,I=I,L=L,KV=KV,V=V,T=T,step=3*fwd,run=15*fwd,attnw=attnw,mlpw=mlpw,head=head)
tiny=shape(128,352,2,4,2,2048,16,128)
big=shape(3584,18944,28,28,4,152064,16,1024)
def sub_sketch(m,n,T,DEN,R,EVERY):
    h=min(m,n); w=max(m,n)
    cov=(T//EVERY)*h*h; eig=3*h**3; proj=T*h*R; top=T*w*R+w*R*h; rest=T*R*h; sk=(T//DEN)*m*n
    return m*n*T - (cov+eig+proj+top+rest+sk)
def count_sketch(m,n,T,DEN):  # attack 10's, centred: mean part m*n + T*(m+n) ignored (not products of T)
    return m*n*T - (T//DEN)*m*n
for name,s in (('tiny',tiny),('7B',big)):
    T=s['T'];H=s['H'];I=s['I'];L=s['L'];KV=s['KV']
    # a11_attn_sketch: q/k/v (one [H+2KV, H] product) and o ([H,H]) sketched, DEN 3, every step (5)
    attn=5*L*(count_sketch(H+2*KV,H,T,3)+count_sketch(H,H,T,3))
    # subspace MLP sketch: gate, up ([I,H]) and down ([H,I]), DEN 4, R 16, EVERY 8
    mlp1=L*(2*sub_sketch(I,H,T,4,16,8)+sub_sketch(H,I,T,4,16,8))
    # emb path skip: layer 0 dn1 ([T,H+2KV]x[H+2KV,H]) every step + layer 0 dn2 (2 x [T,I]x[I,H]) last step
    emb=5*T*(H+2*KV)*H + 2*T*I*H
    print(name, 'run MACs %.4g'%s['run'])
    for k,v in (('a11_attn_sketch (5 steps)',attn),('a11_mlp_subspace_sketch (2 steps)',2*mlp1),('a11_mlp_subspace_sketch_last1',mlp1),('a11_emb_path_skip',emb)):
        print('  %-36s skipped %.4g = %.2f%%'%(k,v,100*v/s['run']))
for name,s in (('tiny',tiny),('7B',big)):
    T=s['T'];H=s['H'];I=s['I'];L=s['L']
    for DEN in (2,3):
        v=L*(2*sub_sketch(I,H,T,DEN,16,8)+sub_sketch(H,I,T,DEN,16,8))
        print(name,'subspace last step DEN',DEN,'%.2f%%'%(100*v/s['run']))
