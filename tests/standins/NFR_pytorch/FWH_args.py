"""Stand-in of NFR's FWH_args: the configargparse parser read from ``-c config/test.yml``."""
import configargparse as argparse


def parser():
    p = argparse.ArgParser()
    p.add_argument('-c', '--config', required=True, is_config_file=True)
    for name, tp, default in [('data_dir', str, None), ('data_head', str, None),
                              ('save_dir', str, None), ('cache_dir', str, './cache'),
                              ('dataset', str, None), ('device', str, 'cuda:0'),
                              ('global_encoder', str, 'pn'), ('feature_type', str, 'cents&norms'),
                              ('feat_dim', int, 5), ('dfn_blocks', int, 4),
                              ('img_enc', str, 'none'), ('img_file', str, None),
                              ('img_feat', int, 32), ('iden_blocks', int, 4),
                              ('global_pn_shape', int, None), ('mlp_hid_channel', int, 128),
                              ('std_file', str, None), ('wks_std_file', str, None)]:
        p.add_argument('--' + name, type=tp, default=default)
    for flag in ('grad', 'img', 'global_pn', 'zero_mean'):
        p.add_argument('--' + flag, default=False, action='store_true')
    return p


def test_parser():
    p = parser()
    p.add_argument('--mesh_file')
    p.add_argument('--resume_id', default=0)
    p.add_argument('--iden_idx', type=int, default=0)
    p.add_argument('--load_head', type=str)
    p.add_argument('--scale', type=float, default=1)
    return p
