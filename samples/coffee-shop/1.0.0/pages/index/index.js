const app = getApp();

Page({
  data: { name: '' },
  onLoad() {
    my.getAuthCode({
      scopes: 'auth_base',
      success: ({ authCode }) => this.signIn(authCode),
    });
  },
  signIn(authCode) {
    my.request({
      url: `${app.globalData.apiBase}/sessions`,
      method: 'POST',
      data: { authCode },
      success: ({ data }) => this.setData({ name: data.firstName }),
    });
  },
  openMenu() {
    my.navigateTo({ url: '/pages/menu/menu' });
  },
});
