"""Pure nn.Modules: AV contrastive model (av), condition tokens (conditioning), latent diffusion (ldm), VAE (vae),
HiFi-GAN (vocoder). Import the submodule you need; this package imports nothing heavy by itself."""
